/**
 * The per-container state directory and the ferry-shim supervisor that writes into it: launching
 * the shim around a runc command, and finding out whether a container's shim is still alive.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Files of one container under `stateDir/<id>/` (the directory is also the OCI bundle). */
export interface ContainerPaths {
  readonly dir: string;
  readonly config: string;
  /** Ferry's own record: createdAt, startedAt, cgroupsPath. */
  readonly state: string;
  readonly shimPid: string;
  /** runc's `--pid-file`: the container init's host pid. */
  readonly containerPid: string;
  /** JSON lines written by the shim. */
  readonly log: string;
  /** Written atomically by the shim when the init exits. */
  readonly exit: string;
  /** runc's own log (`--log`, JSON) for create/restore. */
  readonly runcLog: string;
}

/** The files of container `id` under `stateDir`. */
export function containerPaths(stateDir: string, id: string): ContainerPaths {
  const dir = join(stateDir, id);
  return {
    dir,
    config: join(dir, 'config.json'),
    state: join(dir, 'state.json'),
    shimPid: join(dir, 'shim.pid'),
    containerPid: join(dir, 'container.pid'),
    log: join(dir, 'container.log'),
    exit: join(dir, 'exit.json'),
    runcLog: join(dir, 'runc.log'),
  };
}

/** How a shim launch ended: the wrapped runc command's status and its stderr text. */
export interface ShimLaunch {
  readonly status: number;
  readonly stderr: string;
}

/**
 * The shim's fencing watchdog: it kills the container once `file` is older than `afterMs` (the agent
 * keeps the file's time at its last contact with the cluster; see src/agent/fence.ts).
 */
export interface ShimFence {
  readonly file: string;
  readonly afterMs: number;
}

/** The shim's arguments around a runc command (see native/shim/ferry-shim.c). */
function shimArgs(paths: ContainerPaths, runcArgv: string[], rootfsMount?: { options: string; cwd?: string; target: string }, fence?: ShimFence): string[] {
  const fenceArgs = fence ? ['--fence-file', fence.file, '--fence-after-ms', String(fence.afterMs)] : [];
  const mountArgs = rootfsMount
    ? ['--mount-overlay', rootfsMount.options, '--mount-target', rootfsMount.target, ...(rootfsMount.cwd ? ['--mount-cwd', rootfsMount.cwd] : [])]
    : [];
  return [
    '--pid-file', paths.shimPid,
    '--container-pid-file', paths.containerPid,
    '--log', paths.log,
    '--exit', paths.exit,
    ...mountArgs,
    ...fenceArgs,
    '--', ...runcArgv,
  ];
}

/** A shim process waiting for its arguments on stdin, and how it will end. */
interface WaitingShim {
  readonly child: ChildProcess;
  readonly done: Promise<ShimLaunch>;
  exited: boolean;
}

/** Starts `ferry-shim --args-from-stdin`; unref'd until used, so a spare never keeps a process alive. */
function spawnWaiting(shimPath: string): WaitingShim {
  const child = spawn(shimPath, ['--args-from-stdin'], { stdio: ['pipe', 'ignore', 'pipe'] });
  const w: WaitingShim = {
    child,
    exited: false,
    done: new Promise((resolve, reject) => {
      const err: Buffer[] = [];
      child.stderr!.on('data', (b: Buffer) => err.push(b));
      child.on('error', (e) => { w.exited = true; reject(e); });
      child.on('exit', () => { w.exited = true; });
      child.on('close', (code, signal) => {
        w.exited = true;
        resolve({ status: code ?? (signal ? 128 : 125), stderr: Buffer.concat(err).toString('utf8') });
      });
    }),
  };
  child.stdin!.on('error', () => undefined); // a dead spare is noticed through `exited`/`done`
  void w.done.catch(() => undefined);
  child.unref();
  (child.stdin as unknown as { unref(): void }).unref();
  (child.stderr as unknown as { unref(): void }).unref();
  return w;
}

/** How long after a launch the next spare shim is started. */
const SPARE_DELAY_MS = 100;

/**
 * Starts shims. One is kept started ahead, waiting for its arguments: a container start then only
 * writes them instead of waiting for a fork+exec of this (large) Node process, ~2.5 ms here. The
 * spare ends by itself when this process goes away (its stdin reaches EOF).
 */
export class ShimLauncher {
  private readonly shimPath: string;
  private spare: WaitingShim | undefined;
  private refill: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly fence: ShimFence | undefined;

  constructor(shimPath: string, fence?: ShimFence) {
    this.shimPath = shimPath;
    this.fence = fence;
  }

  /** Runs the shim around `runcArgv`; resolves once the runc command has finished (see launchShim). */
  async launch(paths: ContainerPaths, runcArgv: string[], rootfsMount?: { options: string; cwd?: string; target: string }, fenced = false): Promise<ShimLaunch> {
    let w = this.spare;
    this.spare = undefined;
    if (!w || w.exited || this.closed) w = spawnWaiting(this.shimPath);
    w.child.ref();
    (w.child.stdin as unknown as { ref(): void }).ref();
    (w.child.stderr as unknown as { ref(): void }).ref();
    w.child.stdin!.end(`${shimArgs(paths, runcArgv, rootfsMount, fenced ? this.fence : undefined).join('\0')}\0`);
    try {
      return await w.done;
    } finally {
      this.refillSoon();
    }
  }

  /**
   * Starts the next spare a little later: not during runc's work, and not in the caller's way (a
   * fork of this process blocks it for ~2.5 ms, which would land between "runc returned" and what the
   * caller does next).
   */
  private refillSoon(): void {
    if (this.refill || this.closed) return;
    this.refill = setTimeout(() => {
      this.refill = undefined;
      if (!this.closed && (!this.spare || this.spare.exited)) this.spare = spawnWaiting(this.shimPath);
    }, SPARE_DELAY_MS);
    this.refill.unref();
  }

  /** The pid of the spare shim, if one is waiting (tests). */
  sparePid(): number | undefined {
    return this.spare && !this.spare.exited ? this.spare.child.pid : undefined;
  }

  /** Ends the spare; later launches start their shim on demand. */
  close(): void {
    this.closed = true;
    clearTimeout(this.refill);
    this.spare?.child.stdin?.end();
    this.spare = undefined;
  }
}

/**
 * Starts ferry-shim around `runcArgv` (a full argv, runc binary first) and resolves once the runc
 * command has finished; the shim then keeps supervising on its own, detached from this process.
 */
export function launchShim(shimPath: string, paths: ContainerPaths, runcArgv: string[], rootfsMount?: { options: string; cwd?: string; target: string }): Promise<ShimLaunch> {
  const args = shimArgs(paths, runcArgv, rootfsMount);
  return new Promise((resolve, reject) => {
    const child = spawn(shimPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    const err: Buffer[] = [];
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      resolve({ status: code ?? (signal ? 128 : 125), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

/** The NUL-separated argv of a live process, or undefined when it is gone. */
async function cmdline(pid: number): Promise<string[] | undefined> {
  try {
    const raw = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    return raw.split('\0').filter((s) => s !== '');
  } catch {
    return undefined;
  }
}

/** True when a live process with state other than zombie has this pid. */
export async function isAlive(pid: number): Promise<boolean> {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Field 3 (after the parenthesised comm, which may contain spaces) is the state letter.
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** True when `pid` is a live ferry-shim supervising this container (its argv names our exit file). */
export async function isOurShim(pid: number, paths: ContainerPaths): Promise<boolean> {
  if (!(await isAlive(pid))) return false;
  const argv = await cmdline(pid);
  if (!argv || argv.length === 0) return false;
  const i = argv.indexOf('--exit');
  return /ferry-shim$/.test(argv[0]!) && i >= 0 && argv[i + 1] === paths.exit;
}

/** Reads a pid file; 0 when missing or unreadable. */
export async function readPidFile(file: string): Promise<number> {
  try {
    const n = Number.parseInt((await readFile(file, 'utf8')).trim(), 10);
    return Number.isInteger(n) && n > 0 ? n : 0;
  } catch {
    return 0;
  }
}

/** The pid of this container's live shim, 0 when there is none. */
export async function liveShimPid(paths: ContainerPaths): Promise<number> {
  const pid = await readPidFile(paths.shimPid);
  return pid > 0 && (await isOurShim(pid, paths)) ? pid : 0;
}
