/**
 * The real ContainerRuntime: runc under one ferry-shim per container. Everything it knows lives in
 * `stateDir/<id>/` and in runc's `--root`, so a restarted agent re-adopts running containers by
 * listing the state directory; the shims keep running without it.
 */
import { randomBytes } from 'node:crypto';
import { canRelayStatus, spawnAhead } from '../spawn-ahead.ts';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { cgroupsPathFor, DEFAULT_CGROUP_PARENT, ociResources, writeBundle } from './bundle.ts';
import type { OciConfig } from './bundle.ts';
import { CGROUP_ROOT, cgroupExists, cgroupPids, cgroupVersion, oomKillCount, readStats, removeCgroup } from './cgroups.ts';
import { runtimeErrors } from './errors.ts';
import { runExec } from './exec.ts';
import { readLogs } from './logs.ts';
import { readExit, readRecord, updateRecord, writeExit, writeJsonAtomic } from './record.ts';
import type { ContainerRecord } from './record.ts';
import { criuLogErrors, globalArgs, isNotExist, isNotRunning, normaliseSignal, runcMessage, runRunc } from './runc-cli.ts';
import type { RuncCommand } from './runc-cli.ts';
import { containerPaths, isAlive, liveShimPid, readPidFile, ShimLauncher, type ShimFence } from './shim.ts';
import type { ContainerPaths } from './shim.ts';
import type { BundleSpec, ContainerRuntime, ExitInfo, Resources, RuntimeState, RuntimeStatus } from './types.ts';
import { watchDir } from './watch.ts';

/** Options of the runc runtime. */
export interface RuncRuntimeOptions {
  /** One directory per container (bundle, shim files, logs, exit). */
  readonly stateDir: string;
  /** runc's `--root`. */
  readonly runcRoot: string;
  /** Path of the built ferry-shim binary. */
  readonly shimPath: string;
  readonly runcPath?: string;
  /** CRIU for checkpoint/restore (`runc --criu`). */
  readonly criuPath?: string;
  /** Parent cgroup of every container (default `ferry`). */
  readonly cgroupParent?: string;
  readonly log?: (msg: string) => void;
  /** Poll period of waits and log following (default 250 ms). */
  readonly pollMs?: number;
  /**
   * Where a container's output log lives; default inside its state dir (removed by delete). The agent
   * keeps logs beside its own record so they survive the delete + create of a stop/start or restart.
   */
  readonly logPathFor?: (id: string) => string;
  /** Every container's shim kills it once this file is older than the limit (fencing; see src/agent/fence.ts). */
  readonly fence?: ShimFence;
}

/** Options of a restore from a CRIU image under a new shim. */
export interface RestoreOptions {
  readonly imagePath: string;
  readonly workPath?: string;
  /** More `runc restore` flags, e.g. `--tcp-established`, `--lazy-pages`. */
  readonly extraArgs?: string[];
}

/** The runc runtime: the ContainerRuntime contract plus what checkpoint/restore code needs. */
export interface RuncRuntime extends ContainerRuntime {
  /** How runc is invoked (binary, `--root`, CRIU). */
  readonly runc: RuncCommand;
  /** The files of a container (its directory is its bundle). */
  paths(id: string): ContainerPaths;
  /** Writes the bundle and runs `runc restore -d` under a new shim; resolves when it runs. */
  restore(spec: BundleSpec, options: RestoreOptions): Promise<RuntimeState>;
  /** Ends the shim kept waiting for the next start (containers and their shims keep running). */
  close(): void;
  /**
   * Post-copy dump: CRIU dumps everything but memory and then serves the pages from a page server
   * on `pageServer` (host:port) until the target has them all. Resolves once the images are written
   * and the server listens; `done` settles when CRIU has finished. The container is left as it was
   * (frozen by the caller), never destroyed here.
   */
  checkpointLazy(id: string, o: {
    imagePath: string; workPath: string; pageServer: string; tcpEstablished?: boolean;
    /**
     * An incremental dump over the image at this path (relative to imagePath): the pages listed in
     * the `cleanPages` file (native/criu/clean-pages.c) are PE_PARENT entries, neither dumped nor
     * pinned. Needs the CRIU wrapper of scripts/setup (the shim preloaded).
     */
    parentPath?: string; cleanPages?: string;
  }): Promise<LazyDump>;
}

/** A running post-copy dump (see checkpointLazy). */
export interface LazyDump {
  /** Settles when CRIU exits: resolves when every page was served, rejects with CRIU's errors otherwise. */
  readonly done: Promise<void>;
  /** Ends the dump (SIGTERM to runc, SIGKILL after a grace); the frozen container stays frozen. */
  stop(): Promise<void>;
}

const ID = /^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$/;
/** How long a create may sit without a pid file and a shim before it counts as abandoned. */
const ABANDONED_CREATE_MS = 30_000;
/** How long after SIGKILL (or `runc delete`) the shim gets to record the exit and leave. */
const KILL_GRACE_MS = 10_000;

/** The environment of a CRIU run told the clean-pages shim's list (native/criu/clean-pages.c); undefined without one. */
function criuEnv(cleanPages: string | undefined): NodeJS.ProcessEnv | undefined {
  return cleanPages !== undefined ? { ...process.env, FERRY_CRIU_CLEAN: cleanPages } : undefined;
}

/**
 * Creates the runc runtime. Beyond the contract: an exit whose supervisor was killed before it
 * could record it is reported as `exitCode: -1` (status unknown).
 */
export function createRuncRuntime(options: RuncRuntimeOptions): RuncRuntime {
  const cmd: RuncCommand = { bin: options.runcPath ?? 'runc', root: options.runcRoot, ...(options.criuPath ? { criu: options.criuPath } : {}) };
  const cgroupParent = options.cgroupParent ?? DEFAULT_CGROUP_PARENT;
  const pollMs = options.pollMs ?? 250;
  const log = options.log ?? ((): void => undefined);
  const locks = new Map<string, Promise<unknown>>();
  const shims = new ShimLauncher(options.shimPath, options.fence);

  function paths(id: string): ContainerPaths {
    if (!ID.test(id)) throw runtimeErrors.RUNTIME_INVALID_ID({ id });
    const p = containerPaths(options.stateDir, id);
    return options.logPathFor ? { ...p, log: options.logPathFor(id) } : p;
  }

  /** Runs lifecycle changes of one id one after another. */
  function serial<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = locks.get(id) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(fn);
    locks.set(id, next);
    void next.catch(() => undefined).finally(() => { if (locks.get(id) === next) locks.delete(id); });
    return next;
  }

  async function runcState(id: string): Promise<{ status: RuntimeStatus; pid: number } | undefined> {
    const r = await runRunc(cmd, ['state', id]);
    if (r.code !== 0) {
      const msg = runcMessage(r.stderr);
      if (isNotExist(msg)) return undefined;
      throw runtimeErrors.RUNTIME_COMMAND_FAILED({ command: 'state', id, reason: msg });
    }
    const v = JSON.parse(r.stdout) as { status: RuntimeStatus; pid: number };
    return { status: v.status, pid: v.pid };
  }

  /** The exit, with `oomKilled` filled in (and stored) while the cgroup can still tell. */
  async function exitOf(p: ContainerPaths, rec: ContainerRecord | undefined): Promise<ExitInfo | undefined> {
    const exit = await readExit(p);
    if (!exit || exit.oomKilled !== undefined || !rec) return exit;
    const count = await oomKillCount(rec.cgroupsPath);
    if (count === undefined) return exit;
    const withOom = { ...exit, oomKilled: count > (rec.oomBaseline ?? 0) };
    await writeExit(p, withOom).catch(() => undefined);
    return withOom;
  }

  /**
   * cgroup v1: freezes or thaws a running container through its freezer cgroup directly (polled
   * every millisecond until it holds); a `runc pause` process costs 20–40 ms here, inside every
   * migration's freeze and each slice of a post-copy duty cycle. False when that cannot be done
   * (cgroup v2, no such cgroup, no process in it, or the freezer not settling): runc then answers.
   */
  async function setFreezer(p: ContainerPaths, want: 'FROZEN' | 'THAWED'): Promise<boolean> {
    if (cgroupVersion() !== 1) return false;
    const rec = await readRecord(p);
    if (!rec?.cgroupsPath) return false;
    const dir = join(CGROUP_ROOT, 'freezer', rec.cgroupsPath);
    try {
      if ((await readFile(join(dir, 'cgroup.procs'), 'utf8')).trim() === '') return false;
      await writeFile(join(dir, 'freezer.state'), want);
      for (let i = 0; i < 1000; i++) {
        if ((await readFile(join(dir, 'freezer.state'), 'utf8')).trim() === want) return true;
        await sleep(1);
      }
    } catch {
      // the cgroup went away meanwhile: runc says what the container is
    }
    return false;
  }

  async function state(id: string): Promise<RuntimeState | undefined> {
    const p = paths(id);
    const rec = await readRecord(p);
    if (!rec) return undefined;
    const [rs, shimPid] = await Promise.all([runcState(id), liveShimPid(p)]);
    const exit = await exitOf(p, rec);
    let status: RuntimeStatus;
    if (rs) status = rs.status;
    else if (exit) status = 'stopped';
    else status = shimPid > 0 ? 'creating' : 'stopped';
    return {
      id,
      status,
      pid: rs && status !== 'stopped' ? rs.pid : 0,
      shimPid,
      bundle: p.dir,
      createdAt: rec.createdAt,
      ...(rec.startedAt ? { startedAt: rec.startedAt } : {}),
      ...(exit ? { exit } : {}),
    };
  }

  async function mustState(id: string): Promise<RuntimeState> {
    const st = await state(id);
    if (!st) throw runtimeErrors.RUNTIME_NOT_FOUND({ id });
    return st;
  }

  /** Ends the shim once its container is gone: it normally leaves by itself within its drain time. */
  async function retireShim(p: ContainerPaths): Promise<void> {
    const pid = await liveShimPid(p);
    if (pid === 0) return;
    for (const [signal, waitMs] of [[undefined, 3000], ['SIGTERM', 2000], ['SIGKILL', 2000]] as const) {
      if (signal) {
        if ((await liveShimPid(p)) !== pid) return; // re-checked: never signal a reused pid
        process.kill(pid, signal);
        log(`runtime: sent ${signal} to the shim ${pid} of ${p.dir}`);
      }
      for (let waited = 0; waited < waitMs; waited += 50) {
        if (!(await isAlive(pid))) return;
        await sleep(50);
      }
    }
  }

  async function remove(id: string, p: ContainerPaths): Promise<void> {
    const rec = await readRecord(p);
    const r = await runRunc(cmd, ['delete', '--force', id]);
    if (r.code !== 0 && !isNotExist(runcMessage(r.stderr))) {
      throw runtimeErrors.RUNTIME_COMMAND_FAILED({ command: 'delete', id, reason: runcMessage(r.stderr) });
    }
    await retireShim(p);
    const left = await removeCgroup(rec?.cgroupsPath ?? cgroupsPathFor(id, cgroupParent));
    if (left.length > 0) log(`runtime: cgroup directories of ${id} left behind: ${left.join(', ')}`);
    await rm(p.dir, { recursive: true, force: true });
  }

  /** Starts the shim around a runc create/restore; cleans everything up and throws when it fails. */
  async function launch(spec: BundleSpec, runcArgs: (p: ContainerPaths) => string[], status: 'created' | 'running'): Promise<RuntimeState> {
    const p = paths(spec.id);
    // The state dir exists before runc knows the id and goes only after `runc delete`: no dir, no container.
    if (existsSync(p.dir)) {
      const st = await state(spec.id);
      if (!st || st.status !== 'stopped' || st.shimPid > 0) {
        throw runtimeErrors.RUNTIME_CREATE_FAILED({ id: spec.id, reason: 'a container with this id already exists' });
      }
      await remove(spec.id, p); // a stopped leftover of an earlier run
    }
    await mkdir(options.stateDir, { recursive: true, mode: 0o755 });
    const config: OciConfig = await writeBundle(p.dir, spec, { cgroupParent });
    await writeJsonAtomic(p.state, { createdAt: new Date().toISOString(), cgroupsPath: config.linux.cgroupsPath } satisfies ContainerRecord);
    const argv = [cmd.bin, ...globalArgs(cmd, p.runcLog), ...runcArgs(p)];
    let result;
    try {
      result = await shims.launch(p, argv, spec.rootfsMount ? { ...spec.rootfsMount, target: spec.rootfs } : undefined, spec.fenced === true);
    } catch (e) {
      await remove(spec.id, p).catch(() => undefined);
      throw runtimeErrors.RUNTIME_SHIM_FAILED({ id: spec.id, reason: (e as Error).message }, e);
    }
    if (result.status !== 0) {
      let reason = runcMessage(result.stderr);
      if (reason === 'no error message') reason = runcMessage(await readFile(p.runcLog, 'utf8').catch(() => ''));
      await remove(spec.id, p).catch((e: Error) => log(`runtime: cleanup after failed create of ${spec.id}: ${e.message}`));
      if (result.stderr.startsWith('ferry-shim:')) throw runtimeErrors.RUNTIME_SHIM_FAILED({ id: spec.id, reason });
      throw runtimeErrors.RUNTIME_CREATE_FAILED({ id: spec.id, reason, status: result.status });
    }
    const startedAt = status === 'running' ? new Date().toISOString() : undefined;
    const [oomBaseline, pid, shimPid] = await Promise.all([oomKillCount(config.linux.cgroupsPath), containerPid(p), liveShimPid(p)]);
    await updateRecord(p, { oomBaseline: oomBaseline ?? 0, ...(startedAt ? { startedAt } : {}) });
    // Built from what the launch just did, not from another `runc state`: each runc call costs ~7 ms.
    return { id: spec.id, status, pid, shimPid, bundle: p.dir, createdAt: new Date().toISOString(), ...(startedAt ? { startedAt } : {}) };
  }

  /** Resolves with the exit, or undefined when `ms` pass first. */
  async function exitWithin(id: string, ms: number): Promise<ExitInfo | undefined> {
    try {
      return await runtime.waitExit(id, AbortSignal.timeout(ms));
    } catch (e) {
      if ((e as Error).name === 'TimeoutError' || (e as Error).name === 'AbortError') return undefined;
      throw e;
    }
  }

  /** `runc kill`, quiet when the process is already gone. */
  async function signalQuietly(id: string, signal: string): Promise<void> {
    const r = await runRunc(cmd, ['kill', id, signal]);
    const msg = runcMessage(r.stderr);
    if (r.code !== 0 && !isNotRunning(msg) && !isNotExist(msg)) {
      throw runtimeErrors.RUNTIME_COMMAND_FAILED({ command: `kill ${signal}`, id, reason: msg });
    }
  }

  const runtime: RuncRuntime = {
    runc: cmd,
    paths,
    close: () => shims.close(),

    async create(spec) {
      return serial(spec.id, () => launch(spec, (p) => ['create', '--bundle', p.dir, '--pid-file', p.containerPid, spec.id], 'created'));
    },

    async run(spec) {
      return serial(spec.id, () => launch(spec, (p) => ['run', '--detach', '--bundle', p.dir, '--pid-file', p.containerPid, spec.id], 'running'));
    },

    restore(spec, restoreOptions) {
      if (!cmd.criu) return Promise.reject(runtimeErrors.RUNTIME_CREATE_FAILED({ id: spec.id, reason: 'no criuPath configured' }));
      const criu = cmd.criu;
      return serial(spec.id, async () => {
        let st: RuntimeState;
        try {
          st = await launch(spec, (p) => [
            '--criu', criu, 'restore', '-d', '--image-path', restoreOptions.imagePath,
            ...(restoreOptions.workPath ? ['--work-path', restoreOptions.workPath] : []),
            ...(restoreOptions.extraArgs ?? []),
            '--bundle', p.dir, '--pid-file', p.containerPid, spec.id,
          ], 'running');
        } catch (e) {
          // CRIU's own words are in restore.log (in the work dir); runc only says "criu failed".
          const errors = await criuLogErrors(join(restoreOptions.workPath ?? restoreOptions.imagePath, 'restore.log'));
          if (errors) (e as Error).message += ` — CRIU: ${errors}`;
          throw e;
        }
        // launch() recorded the start and read the pid: no `runc state` (~7 ms, inside a migration's freeze).
        return st;
      });
    },

    async start(id) {
      return serial(id, async () => {
        // Straight to `runc start`; only when it refuses do we ask why (saves two `runc state` calls).
        const r = await runRunc(cmd, ['start', id]);
        if (r.code !== 0) {
          const st = await mustState(id);
          if (st.status === 'running') return st;
          if (st.status !== 'created') throw runtimeErrors.RUNTIME_NOT_RUNNING({ id, status: st.status });
          throw runtimeErrors.RUNTIME_COMMAND_FAILED({ command: 'start', id, reason: runcMessage(r.stderr) });
        }
        const p = paths(id);
        const startedAt = new Date().toISOString();
        await updateRecord(p, { startedAt });
        const [rec, pid, shimPid] = await Promise.all([readRecord(p), containerPid(p), liveShimPid(p)]);
        return { id, status: 'running', pid, shimPid, bundle: p.dir, createdAt: rec?.createdAt ?? startedAt, startedAt };
      });
    },

    async pause(id) {
      if (await setFreezer(paths(id), 'FROZEN')) return;
      const r = await runRunc(cmd, ['pause', id]);
      if (r.code !== 0) throw runtimeErrors.RUNTIME_COMMAND_FAILED({ command: 'pause', id, reason: runcMessage(r.stderr) });
    },

    async resume(id) {
      if (await setFreezer(paths(id), 'THAWED')) return;
      const r = await runRunc(cmd, ['resume', id]);
      if (r.code !== 0) throw runtimeErrors.RUNTIME_COMMAND_FAILED({ command: 'resume', id, reason: runcMessage(r.stderr) });
    },

    async checkpoint(id, o) {
      if (!cmd.criu) throw runtimeErrors.RUNTIME_COMMAND_FAILED({ command: 'checkpoint', id, reason: 'no criuPath configured' });
      const args = ['--criu', cmd.criu, 'checkpoint', '--image-path', o.imagePath, '--work-path', o.workPath ?? o.imagePath];
      if (o.leaveRunning) args.push('--leave-running');
      if (o.tcpEstablished) args.push('--tcp-established');
      if (o.pageServer) args.push('--page-server', o.pageServer);
      if (o.parentPath !== undefined) args.push('--parent-path', o.parentPath);
      const r = await runRunc(cmd, [...args, id], undefined, criuEnv(o.cleanPages));
      if (r.code !== 0) {
        const errors = await criuLogErrors(join(o.workPath ?? o.imagePath, 'dump.log'));
        throw runtimeErrors.RUNTIME_COMMAND_FAILED({ command: 'checkpoint', id, reason: `${runcMessage(r.stderr)}${errors ? ` — CRIU: ${errors}` : ''}` });
      }
    },

    async checkpointLazy(id, o) {
      if (!cmd.criu) throw runtimeErrors.RUNTIME_COMMAND_FAILED({ command: 'checkpoint', id, reason: 'no criuPath configured' });
      const args = [
        ...globalArgs(cmd), '--criu', cmd.criu, 'checkpoint', '--image-path', o.imagePath, '--work-path', o.workPath,
        // --leave-running: once every page is served the container stays as it was (frozen), not
        // destroyed — it goes only after the switch is recorded, exactly like a stop-copy source.
        '--lazy-pages', '--leave-running', '--page-server', o.pageServer, '--status-fd', '3', ...(o.tcpEstablished ? ['--tcp-established'] : []),
        ...(o.parentPath !== undefined ? ['--parent-path', o.parentPath] : []), id,
      ];
      // Fd 3 gets one byte from CRIU once the images are written and the page server listens. runc
      // accepts only an O_WRONLY status fd, and Node's pipes are read-write socket pairs, so a real
      // pipe carries the byte to stdout: ferry-exec's status pipe (no process start of its own), or
      // without that helper a shell pipe (`cat` passes it on; pipefail keeps runc's exit status). Its
      // own group, so stop() reaches runc too.
      const env = criuEnv(o.cleanPages) ?? process.env;
      const child = canRelayStatus()
        ? spawnAhead(cmd.bin, args, { noInput: true, detached: true, statusPipe: true, env })
        : spawnAhead('bash', ['-c', 'set -o pipefail; "$@" 3>&1 >/dev/null | cat', 'bash', cmd.bin, ...args], { noInput: true, detached: true, env });
      let stderr = '';
      child.stderr!.on('data', (b: Buffer) => { stderr += b.toString(); });
      const failure = async (code: number | null): Promise<Error> => {
        const errors = await criuLogErrors(join(o.workPath, 'dump.log'));
        return runtimeErrors.RUNTIME_COMMAND_FAILED({ command: 'checkpoint --lazy-pages', id, reason: `${runcMessage(stderr) === 'no error message' ? `exit ${code}` : runcMessage(stderr)}${errors ? ` — CRIU: ${errors}` : ''}` });
      };
      const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
      const done = exited.then(async (code) => { if (code !== 0) throw await failure(code); });
      void done.catch(() => undefined);
      const status = child.stdout!;
      const ready = await new Promise<boolean>((resolve) => {
        status.once('data', () => resolve(true));
        void exited.then(() => resolve(false));
      });
      status.resume();
      const group = (signal: NodeJS.Signals): void => { try { process.kill(-child.pid!, signal); } catch { /* gone */ } };
      const stop = async (): Promise<void> => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        group('SIGTERM');
        const t = setTimeout(() => group('SIGKILL'), 3000);
        await exited;
        clearTimeout(t);
      };
      if (!ready) throw await failure(await exited);
      log(`runtime: ${id} dumped for post-copy; serving its pages on ${o.pageServer}`);
      return { done, stop };
    },

    async kill(id, signal) {
      const sig = normaliseSignal(signal);
      if (!sig) throw runtimeErrors.RUNTIME_COMMAND_FAILED({ command: 'kill', id, reason: `unknown signal ${signal}` });
      // An exit on record (the shim writes it once the init is gone) answers without a `runc state`:
      // a fence kills every container of a host at once, most of them already dead by their shims.
      if (await readExit(paths(id))) throw runtimeErrors.RUNTIME_NOT_RUNNING({ id, status: 'stopped' });
      const st = await mustState(id);
      if (st.status === 'stopped') throw runtimeErrors.RUNTIME_NOT_RUNNING({ id, status: st.status });
      const r = await runRunc(cmd, ['kill', id, sig]);
      if (r.code === 0) return;
      const msg = runcMessage(r.stderr);
      if (isNotRunning(msg)) throw runtimeErrors.RUNTIME_NOT_RUNNING({ id, status: 'stopped' });
      throw runtimeErrors.RUNTIME_COMMAND_FAILED({ command: `kill ${sig}`, id, reason: msg });
    },

    async stop(id, timeoutMs) {
      const st = await state(id);
      if (!st) return undefined;
      if (st.status === 'stopped') return st.exit ?? (st.shimPid > 0 ? exitWithin(id, KILL_GRACE_MS) : undefined);
      if (st.status === 'paused') await runRunc(cmd, ['resume', id]);
      // A created container has not run anything yet: nothing to shut down gracefully.
      if (st.status !== 'created') {
        await signalQuietly(id, 'SIGTERM');
        const exit = await exitWithin(id, timeoutMs);
        if (exit) return exit;
      }
      await signalQuietly(id, 'SIGKILL');
      const exit = await exitWithin(id, KILL_GRACE_MS);
      if (!exit) throw runtimeErrors.RUNTIME_SHIM_FAILED({ id, reason: 'no exit recorded after SIGKILL' });
      return exit;
    },

    async delete(id) {
      const p = paths(id);
      return serial(id, () => remove(id, p));
    },

    state,

    async list() {
      const names = await readdir(options.stateDir).catch(() => [] as string[]);
      const states = await Promise.all(names.filter((n) => ID.test(n)).map((n) => state(n).catch(() => undefined)));
      return states.filter((s): s is RuntimeState => s !== undefined);
    },

    async waitExit(id, signal) {
      const p = paths(id);
      const watcher = watchDir(p.dir);
      try {
        for (;;) {
          signal?.throwIfAborted();
          const rec = await readRecord(p);
          const exit = await exitOf(p, rec);
          if (exit) return exit;
          if (!rec) throw runtimeErrors.RUNTIME_NOT_FOUND({ id });
          if ((await liveShimPid(p)) === 0) {
            // The shim writes exit.json before it goes, so read once more before concluding it died.
            const again = await exitOf(p, rec);
            if (again) return again;
            const created = existsSync(p.containerPid) || Date.now() - Date.parse(rec.createdAt) > ABANDONED_CREATE_MS;
            const rs = created ? await runcState(id) : undefined;
            if (created && (!rs || rs.status === 'stopped')) {
              // Supervisor gone (killed): the real status is lost; -1 says so.
              const lost: ExitInfo = { exitCode: -1, finishedAt: new Date().toISOString() };
              await writeExit(p, lost);
              log(`runtime: the shim of ${id} is gone; its exit status is unknown`);
              return lost;
            }
          }
          await watcher.next(pollMs, signal);
        }
      } finally {
        watcher.close();
      }
    },

    async update(id, resources: Resources) {
      return serial(id, async () => {
        const st = await mustState(id);
        if (st.status === 'stopped') throw runtimeErrors.RUNTIME_NOT_RUNNING({ id, status: st.status });
        const oci = ociResources(resources);
        // undefined means unlimited: -1 lifts a limit set earlier.
        const mem = String(oci.memory?.limit ?? -1);
        const args = ['update', '--memory', mem, '--memory-swap', mem, '--cpu-quota', String(oci.cpu?.quota ?? -1)];
        if (oci.cpu) args.push('--cpu-period', String(oci.cpu.period));
        args.push('--pids-limit', String(oci.pids?.limit ?? -1), id);
        const r = await runRunc(cmd, args);
        if (r.code !== 0) throw runtimeErrors.RUNTIME_UPDATE_FAILED({ id, reason: runcMessage(r.stderr) });
        // Keep the bundle in step, so a restore from a checkpoint gets the same limits.
        const p = paths(id);
        const config = JSON.parse(await readFile(p.config, 'utf8')) as OciConfig;
        config.linux.resources = { ...oci, devices: config.linux.resources.devices };
        await writeJsonAtomic(p.config, config);
      });
    },

    async exec(id, execOptions) {
      const st = await mustState(id);
      if (st.status !== 'running') throw runtimeErrors.RUNTIME_NOT_RUNNING({ id, status: st.status });
      const logFile = join(paths(id).dir, `exec-${randomBytes(6).toString('hex')}.log`);
      return runExec(cmd, id, execOptions, logFile);
    },

    async stats(id) {
      const rec = await readRecord(paths(id));
      if (!rec) throw runtimeErrors.RUNTIME_NOT_FOUND({ id });
      if (!cgroupExists(rec.cgroupsPath)) throw runtimeErrors.RUNTIME_NOT_RUNNING({ id, status: 'stopped' });
      return readStats(rec.cgroupsPath);
    },

    async pids(id) {
      const rec = await readRecord(paths(id));
      if (!rec) throw runtimeErrors.RUNTIME_NOT_FOUND({ id });
      return cgroupPids(rec.cgroupsPath);
    },

    logs(id, logOptions) {
      return (async function* () {
        const p = paths(id);
        if (!existsSync(p.state)) throw runtimeErrors.RUNTIME_NOT_FOUND({ id });
        yield* readLogs(p, { ...logOptions, pollMs });
      })();
    },
  };
  return runtime;
}

/** Reads a container's init pid from its pid file (0 when absent); exported for checkpoint code. */
export function containerPid(p: ContainerPaths): Promise<number> {
  return readPidFile(p.containerPid);
}
