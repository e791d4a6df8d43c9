/**
 * The per-container state directory and the ferry-shim supervisor that writes into it: launching
 * the shim around a runc command, and finding out whether a container's shim is still alive.
 */
import { spawn } from 'node:child_process';
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
 * Starts ferry-shim around `runcArgv` (a full argv, runc binary first) and resolves once the runc
 * command has finished; the shim then keeps supervising on its own, detached from this process.
 */
export function launchShim(shimPath: string, paths: ContainerPaths, runcArgv: string[], rootfsMount?: { options: string; cwd?: string; target: string }): Promise<ShimLaunch> {
  const mountArgs = rootfsMount
    ? ['--mount-overlay', rootfsMount.options, '--mount-target', rootfsMount.target, ...(rootfsMount.cwd ? ['--mount-cwd', rootfsMount.cwd] : [])]
    : [];
  const args = [
    '--pid-file', paths.shimPid,
    '--container-pid-file', paths.containerPid,
    '--log', paths.log,
    '--exit', paths.exit,
    ...mountArgs,
    '--', ...runcArgv,
  ];
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
