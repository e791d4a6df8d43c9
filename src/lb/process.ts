/**
 * The HAProxy process: found, config-checked, started in master-worker mode (`-W`, master CLI on a
 * socket), reloaded hitlessly through the master (listeners pass to the new worker through the
 * admin socket's `expose-fd listeners`), and stopped by its PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { lbErrors } from './errors.ts';
import { RuntimeClient } from './runtime.ts';
import { parseShowInfo, parseShowProc, type ProcInfo } from './stat.ts';
import type { LbPaths } from './types.ts';

const SYSTEM_DIRS = ['/usr/sbin', '/usr/local/sbin', '/sbin'];

/** The haproxy binary to run: `binary` if given (path or name), else the first on PATH or in the sbin dirs. */
export function resolveHaproxy(binary = 'haproxy'): string {
  const candidates = binary.includes('/')
    ? [binary]
    : [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...SYSTEM_DIRS].map((d) => join(d, binary));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch { /* next candidate */ }
  }
  throw lbErrors.HAPROXY_MISSING({ binary });
}

function run(bin: string, args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => out.push(b));
    child.on('error', (e) => reject(lbErrors.HAPROXY_MISSING({ binary: `${bin}: ${e.message}` }, e)));
    child.on('close', (code) => resolve({ code, output: Buffer.concat(out).toString('utf8').trim() }));
  });
}

/** Runs `haproxy -c` on a config file; rejects with CONFIG_CHECK_FAILED carrying HAProxy's output. */
export async function checkConfig(bin: string, configPath: string): Promise<void> {
  const r = await run(bin, ['-c', '-f', configPath]);
  if (r.code !== 0) throw lbErrors.CONFIG_CHECK_FAILED({ output: r.output || `exit code ${r.code}`, config: configPath });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A running HAProxy master and its workers. */
export class HaproxyProcess {
  /** The admin stats socket of the current worker. */
  readonly admin: RuntimeClient;
  /** The master CLI. */
  readonly master: RuntimeClient;
  private exitCode: number | null | undefined;
  private readonly tail: string[] = [];
  private readonly exited: Promise<void>;
  private lastProc: ProcInfo | undefined;

  private constructor(private readonly child: ChildProcess, paths: LbPaths) {
    this.admin = new RuntimeClient(paths.adminSocket);
    this.master = new RuntimeClient(paths.masterSocket);
    const keep = (b: Buffer): void => {
      this.tail.push(...b.toString('utf8').split('\n').filter(Boolean));
      if (this.tail.length > 50) this.tail.splice(0, this.tail.length - 50);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => {
      this.exitCode = code ?? (signal ? -1 : null);
      resolve();
    }));
  }

  /** PID of the master (what `-p` writes to the pidfile). */
  get pid(): number {
    return this.child.pid ?? 0;
  }

  /** True while the master runs. */
  get running(): boolean {
    return this.exitCode === undefined;
  }

  /** HAProxy's last lines of output (alerts and warnings). */
  output(): string {
    return this.tail.join('\n');
  }

  /** Starts `haproxy -W` on the config in `paths` and waits until a worker answers on the admin socket. */
  static async start(bin: string, paths: LbPaths, timeoutMs = 10_000): Promise<HaproxyProcess> {
    const child = spawn(bin, ['-W', '-S', `${paths.masterSocket},mode,600`, '-f', paths.config, '-p', paths.pidfile], { stdio: ['ignore', 'pipe', 'pipe'] });
    const p = new HaproxyProcess(child, paths);
    const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const failed = await Promise.race([spawnError, sleep(50).then(() => undefined)]);
      if (failed) throw lbErrors.HAPROXY_START_FAILED({ reason: failed.message }, failed);
      if (!p.running) throw lbErrors.HAPROXY_START_FAILED({ reason: `exited (${p.exitCode}): ${p.output() || 'no output'}` });
      try {
        const info = parseShowInfo(await p.admin.send('show info'));
        const proc = await p.procInfo();
        if (info.Pid && proc.workers.some((w) => String(w.pid) === info.Pid)) return p;
      } catch { /* sockets not up yet */ }
      if (Date.now() > deadline) {
        await p.stop();
        throw lbErrors.HAPROXY_START_FAILED({ reason: `no worker answered within ${timeoutMs} ms: ${p.output() || 'no output'}` });
      }
    }
  }

  /** The master's view of its processes (`show proc`). */
  async procInfo(): Promise<ProcInfo> {
    const info = parseShowProc(await this.master.send('show proc'));
    this.lastProc = info;
    return info;
  }

  /** PID of the worker answering on the admin socket now. */
  async workerPid(): Promise<number> {
    return Number(parseShowInfo(await this.admin.send('show info')).Pid ?? 0);
  }

  /**
   * Reloads through the master and waits until a new worker serves the admin socket; the old worker
   * finishes its connections on its own. Rejects with HAPROXY_RELOAD_FAILED if the master refuses.
   */
  async reload(timeoutMs = 15_000): Promise<{ before: ProcInfo; after: ProcInfo }> {
    const before = await this.procInfo();
    const oldPids = new Set(before.workers.map((w) => w.pid));
    // The master re-executes itself, so this connection may close without an answer.
    await this.master.send('reload').catch(() => undefined);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await sleep(50);
      if (!this.running) throw lbErrors.HAPROXY_RELOAD_FAILED({ reason: `master exited: ${this.output()}` });
      try {
        const after = await this.procInfo();
        if (after.failedReloads > before.failedReloads) throw lbErrors.HAPROXY_RELOAD_FAILED({ reason: this.output() || 'the master reports a failed reload' });
        const fresh = after.workers.find((w) => !oldPids.has(w.pid));
        if (fresh && after.masterReloads > before.masterReloads && (await this.workerPid()) === fresh.pid) return { before, after };
      } catch (e) {
        if ((e as { code?: string }).code === 'FERRY_ERR_HAPROXY_RELOAD_FAILED') throw e;
      }
      if (Date.now() > deadline) throw lbErrors.HAPROXY_RELOAD_FAILED({ reason: `no new worker within ${timeoutMs} ms: ${this.output()}` });
    }
  }

  /** Stops the master (SIGTERM, then SIGKILL) and any worker it left behind, each by PID. */
  async stop(timeoutMs = 5000): Promise<void> {
    if (this.running) {
      await this.procInfo().catch(() => undefined);
      this.child.kill('SIGTERM');
      const done = await Promise.race([this.exited.then(() => true), sleep(timeoutMs).then(() => false)]);
      if (!done) {
        this.child.kill('SIGKILL');
        await this.exited;
      }
    }
    // Workers leave when their master does; one that lingers (stuck) is ended by its PID.
    const workers = [...(this.lastProc?.workers ?? []), ...(this.lastProc?.oldWorkers ?? [])].map((w) => w.pid);
    for (const pid of workers) {
      for (let i = 0; i < 40 && alive(pid); i++) await sleep(25);
      if (alive(pid)) try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
    }
  }
}

/**
 * Stops an HAProxy an earlier lb left running on this state dir (its pidfile names a live process
 * whose command line has this config); returns its PID, or undefined when there was none.
 */
export async function stopLeftover(paths: LbPaths): Promise<number | undefined> {
  let pid: number;
  try {
    pid = Number(readFileSync(paths.pidfile, 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 1 || !alive(pid)) return undefined;
    if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(paths.config)) return undefined;
  } catch {
    return undefined;
  }
  try { process.kill(pid, 'SIGTERM'); } catch { return undefined; }
  for (let i = 0; i < 100 && alive(pid); i++) await sleep(20);
  if (alive(pid)) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  return pid;
}

/** True while `pid` runs (a zombie nobody reaps counts as gone). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
