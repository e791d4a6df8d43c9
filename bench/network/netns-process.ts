/**
 * A process bench/network starts inside a network namespace (`nsenter --net=<path> -- …`, mounts
 * stay this machine's): its stdout lines as they come, its exit, and a stop by its own pid. Every one
 * started is remembered until it has exited, so a teardown can stop whatever is still running.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

/** Processes started and not yet exited. */
const running = new Set<NetnsProcess>();
/** Set by stopAll: a teardown has begun, nothing new may start (it could outlive the sweep). */
let closed = false;

/** One process in a network namespace. */
export class NetnsProcess {
  /** Its stdout, one entry a line. */
  readonly lines: string[] = [];
  /** Resolves with the exit code (null when killed by a signal) once it has exited. */
  readonly exited: Promise<number | null>;
  private stderr = '';
  private readonly child: ChildProcess;
  private readonly listeners = new Set<() => void>();

  /** Starts `argv` in the network namespace at `netnsPath` (/run/netns/<name> or /proc/<pid>/ns/net). */
  constructor(readonly netnsPath: string, readonly argv: readonly string[]) {
    if (closed) throw new Error(`not starting ${argv.join(' ')}: the run is being torn down`);
    this.child = spawn('nsenter', [`--net=${netnsPath}`, '--', ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(this);
    this.child.stderr!.on('data', (d: Buffer) => { this.stderr = (this.stderr + d.toString()).slice(-4000); });
    createInterface({ input: this.child.stdout! }).on('line', (l) => {
      this.lines.push(l);
      for (const f of this.listeners) f();
    });
    this.exited = new Promise((resolve) => {
      this.child.on('error', (e) => { this.stderr += e.message; running.delete(this); resolve(null); for (const f of this.listeners) f(); });
      this.child.on('close', (code) => { running.delete(this); resolve(code); for (const f of this.listeners) f(); });
    });
  }

  /** True until it has exited. */
  get alive(): boolean {
    return running.has(this);
  }

  /** What it wrote on stderr (the last 4000 characters). */
  get errors(): string {
    return this.stderr.trim();
  }

  /** Waits until `test` (re-run on every new line and at exit) returns a value; fails on timeout or when it exits first. */
  until<T>(what: string, test: () => T | undefined, timeoutMs: number): Promise<T> {
    return new Promise((resolve, reject) => {
      const done = (): void => { clearTimeout(timer); this.listeners.delete(check); };
      const check = (): void => {
        const v = test();
        if (v !== undefined) { done(); resolve(v); return; }
        if (!this.alive) { done(); reject(new Error(`${what}: ${this.describe()} exited: ${this.lines.slice(-3).join(' | ')} ${this.errors}`)); }
      };
      const timer = setTimeout(() => { done(); reject(new Error(`${what}: no answer from ${this.describe()} within ${timeoutMs} ms`)); }, timeoutMs);
      this.listeners.add(check);
      check();
    });
  }

  /** Waits for it to exit by itself and returns its last stdout line parsed as JSON (fails on an `error` line or a non-zero exit). */
  async result<T>(timeoutMs: number): Promise<T> {
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(timer);
    const last = this.lines.at(-1);
    const parsed = last?.startsWith('{') ? (JSON.parse(last) as T & { error?: string }) : undefined;
    if (code !== 0 || !parsed || parsed.error !== undefined) {
      throw new Error(`${this.describe()} exited ${code ?? 'by a signal'}: ${parsed?.error ?? last ?? ''} ${this.errors}`.trim());
    }
    return parsed;
  }

  /** Sends SIGTERM (then SIGKILL after `graceMs`) to this process, by its pid, and waits for its exit. */
  async stop(graceMs = 2_000): Promise<void> {
    if (!this.alive || this.child.pid === undefined) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  private describe(): string {
    return `\`${this.argv.slice(1).map((a) => a.split('/').at(-1)).join(' ')}\` in ${this.netnsPath}`;
  }
}

/** True once stopAll has been called: the run is ending. */
export function closing(): boolean {
  return closed;
}

/** Stops every process started here that still runs, and refuses to start more. */
export async function stopAll(): Promise<void> {
  closed = true;
  await Promise.all([...running].map((p) => p.stop(1_000)));
}
