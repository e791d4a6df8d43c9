/**
 * An in-memory ContainerRuntime for fast unit tests of the agent: the same states and errors as
 * the runc runtime, exits on kill, and knobs to simulate exits, output, exec results and failures.
 */
import { runtimeErrors } from './errors.ts';
import { normaliseSignal, signalNumber } from './runc-cli.ts';
import type { BundleSpec, ContainerRuntime, ContainerStats, ExecOptions, ExitInfo, LogEntry, Resources, RuntimeState, RuntimeStatus } from './types.ts';

/** What a simulated exec does. */
export interface FakeExecResult {
  readonly exitCode: number;
  readonly stdout?: string;
  readonly stderr?: string;
}

/** The fake runtime plus its test controls. */
export interface FakeRuntime extends ContainerRuntime {
  /** Ends the container's process as if it exited with `code` (or was killed by `signal`). */
  exit(id: string, code: number, signal?: string): void;
  /** Appends a line to the container's output. */
  emit(id: string, stream: 'stdout' | 'stderr', line: string): void;
  /** Makes the container ignore these signals (e.g. `SIGTERM`, so `stop` has to escalate). */
  ignoreSignals(id: string, signals: string[]): void;
  /** The next `create` fails with this runc-like message. */
  failNextCreate(reason: string): void;
  /** Sets what `exec` does (default: exit 0, no output). */
  onExec(handler: (id: string, options: ExecOptions) => FakeExecResult | Promise<FakeExecResult>): void;
  /** Overrides the figures `stats` returns. */
  setStats(id: string, stats: Partial<ContainerStats>): void;
  /** The spec a container was created with and its current limits. */
  inspect(id: string): { spec: BundleSpec; resources: Resources; signals: string[] } | undefined;
  /** Every call made, in order, as `method id` strings. */
  readonly calls: string[];
}

interface FakeContainer {
  spec: BundleSpec;
  status: RuntimeStatus;
  pid: number;
  createdAt: string;
  startedAt?: string;
  exit?: ExitInfo;
  resources: Resources;
  ignored: Set<string>;
  signals: string[];
  logs: LogEntry[];
  stats: Partial<ContainerStats>;
  wake: Set<() => void>;
}

/** Creates an empty fake runtime. */
export function createFakeRuntime(): FakeRuntime {
  const containers = new Map<string, FakeContainer>();
  const calls: string[] = [];
  let nextPid = 1000;
  let createFailure: string | undefined;
  let execHandler: (id: string, options: ExecOptions) => FakeExecResult | Promise<FakeExecResult> = () => ({ exitCode: 0 });

  function get(id: string): FakeContainer {
    const c = containers.get(id);
    if (!c) throw runtimeErrors.RUNTIME_NOT_FOUND({ id });
    return c;
  }

  function wake(c: FakeContainer): void {
    [...c.wake].forEach((w) => w());
  }

  function finish(c: FakeContainer, exitCode: number, signal?: string): void {
    if (c.status === 'stopped') return;
    c.status = 'stopped';
    c.pid = 0;
    c.exit = { exitCode, ...(signal ? { signal } : {}), finishedAt: new Date().toISOString(), oomKilled: false };
    wake(c);
  }

  function snapshot(id: string, c: FakeContainer): RuntimeState {
    return {
      id,
      status: c.status,
      pid: c.pid,
      shimPid: c.status === 'stopped' ? 0 : 1,
      bundle: `/fake/${id}`,
      createdAt: c.createdAt,
      ...(c.startedAt ? { startedAt: c.startedAt } : {}),
      ...(c.exit ? { exit: c.exit } : {}),
    };
  }

  function until(c: FakeContainer, done: () => boolean, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (signal?.aborted) {
          c.wake.delete(check);
          reject(signal.reason);
        } else if (done()) {
          c.wake.delete(check);
          resolve();
        }
      };
      c.wake.add(check);
      signal?.addEventListener('abort', check, { once: true });
      check();
    });
  }

  const fake: FakeRuntime = {
    calls,

    async create(spec) {
      calls.push(`create ${spec.id}`);
      const existing = containers.get(spec.id);
      if (existing && existing.status !== 'stopped') {
        throw runtimeErrors.RUNTIME_CREATE_FAILED({ id: spec.id, reason: 'a container with this id already exists' });
      }
      if (createFailure !== undefined) {
        const reason = createFailure;
        createFailure = undefined;
        throw runtimeErrors.RUNTIME_CREATE_FAILED({ id: spec.id, reason });
      }
      const c: FakeContainer = {
        spec, status: 'created', pid: nextPid++, createdAt: new Date().toISOString(), resources: spec.resources,
        ignored: new Set(), signals: [], logs: [], stats: {}, wake: new Set(),
      };
      containers.set(spec.id, c);
      return snapshot(spec.id, c);
    },

    async run(spec) {
      await fake.create(spec);
      return fake.start(spec.id);
    },

    async start(id) {
      calls.push(`start ${id}`);
      const c = get(id);
      if (c.status === 'running') return snapshot(id, c);
      if (c.status !== 'created') throw runtimeErrors.RUNTIME_NOT_RUNNING({ id, status: c.status });
      c.status = 'running';
      c.startedAt = new Date().toISOString();
      return snapshot(id, c);
    },

    async kill(id, signal) {
      calls.push(`kill ${id} ${signal}`);
      const c = get(id);
      const sig = normaliseSignal(signal);
      if (!sig) throw runtimeErrors.RUNTIME_COMMAND_FAILED({ command: 'kill', id, reason: `unknown signal ${signal}` });
      if (c.status === 'stopped') throw runtimeErrors.RUNTIME_NOT_RUNNING({ id, status: c.status });
      c.signals.push(sig);
      if (sig !== 'SIGKILL' && (c.ignored.has(sig) || c.status === 'created')) return;
      finish(c, 128 + signalNumber(sig), sig);
    },

    async stop(id, timeoutMs) {
      calls.push(`stop ${id}`);
      const c = containers.get(id);
      if (!c) return undefined;
      if (c.status === 'stopped') return c.exit;
      await fake.kill(id, 'SIGTERM');
      // A referenced timer (AbortSignal.timeout's is not) keeps the event loop alive meanwhile.
      const grace = new AbortController();
      const timer = setTimeout(() => grace.abort(), timeoutMs);
      await until(c, () => c.status === 'stopped', grace.signal).catch(() => undefined);
      clearTimeout(timer);
      if (!c.exit) await fake.kill(id, 'SIGKILL');
      return c.exit;
    },

    async delete(id) {
      calls.push(`delete ${id}`);
      const c = containers.get(id);
      if (!c) return;
      finish(c, 137, 'SIGKILL');
      containers.delete(id);
      wake(c);
    },

    async state(id) {
      const c = containers.get(id);
      return c ? snapshot(id, c) : undefined;
    },

    async list() {
      return [...containers.entries()].map(([id, c]) => snapshot(id, c));
    },

    async waitExit(id, signal) {
      const c = get(id);
      await until(c, () => c.exit !== undefined, signal);
      return c.exit!;
    },

    async update(id, resources) {
      calls.push(`update ${id}`);
      const c = get(id);
      if (c.status === 'stopped') throw runtimeErrors.RUNTIME_NOT_RUNNING({ id, status: c.status });
      c.resources = resources;
    },

    async exec(id, options) {
      calls.push(`exec ${id} ${options.args.join(' ')}`);
      const c = get(id);
      if (c.status !== 'running') throw runtimeErrors.RUNTIME_NOT_RUNNING({ id, status: c.status });
      const r = await execHandler(id, options);
      if (r.stdout) options.onStdout(new TextEncoder().encode(r.stdout));
      if (r.stderr) options.onStderr(new TextEncoder().encode(r.stderr));
      return r.exitCode;
    },

    async pause(id) {
      calls.push(`pause ${id}`);
      const c = get(id);
      if (c.status !== 'running') throw runtimeErrors.RUNTIME_NOT_RUNNING({ id, status: c.status });
      c.status = 'paused';
    },

    async resume(id) {
      calls.push(`resume ${id}`);
      const c = get(id);
      if (c.status !== 'paused') throw runtimeErrors.RUNTIME_NOT_RUNNING({ id, status: c.status });
      c.status = 'running';
    },

    async checkpoint(id) {
      calls.push(`checkpoint ${id}`);
      get(id);
    },

    async restore(spec) {
      calls.push(`restore ${spec.id}`);
      await fake.create(spec);
      return fake.start(spec.id);
    },

    async pids(id) {
      const c = get(id);
      return c.status === 'running' || c.status === 'paused' ? [c.pid] : [];
    },

    async stats(id) {
      const c = get(id);
      return {
        time: new Date().toISOString(),
        cpuUsageNs: 0,
        memoryUsageBytes: 0,
        memoryLimitBytes: c.resources.memoryBytes ?? 0,
        pids: c.status === 'running' ? 1 : 0,
        cgroupVersion: 1,
        ...c.stats,
      };
    },

    logs(id, options) {
      return (async function* () {
        const c = get(id);
        let i = options.tail === undefined ? 0 : Math.max(0, c.logs.length - options.tail);
        for (;;) {
          while (i < c.logs.length) {
            if (options.signal?.aborted) return;
            yield c.logs[i++]!;
          }
          if (!options.follow || c.status === 'stopped' || options.signal?.aborted) return;
          const seen = c.logs.length;
          await until(c, () => c.logs.length > seen || c.status === 'stopped', options.signal).catch(() => undefined);
        }
      })();
    },

    exit(id, code, signal) {
      finish(get(id), signal ? 128 + signalNumber(signal) : code, signal);
    },

    emit(id, stream, line) {
      const c = get(id);
      c.logs.push({ time: new Date().toISOString(), stream, line });
      wake(c);
    },

    ignoreSignals(id, signals) {
      const c = get(id);
      for (const s of signals) c.ignored.add(normaliseSignal(s) ?? s);
    },

    failNextCreate(reason) {
      createFailure = reason;
    },

    onExec(handler) {
      execHandler = handler;
    },

    setStats(id, stats) {
      get(id).stats = stats;
    },

    inspect(id) {
      const c = containers.get(id);
      return c ? { spec: c.spec, resources: c.resources, signals: [...c.signals] } : undefined;
    },
  };
  return fake;
}
