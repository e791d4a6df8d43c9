/**
 * What the migration benchmark does on the host: commands that must succeed (their stderr becomes
 * the error), the wait for a workload's ballast to be resident, and removal of cgroups it made.
 */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

/** A failed host command, with the text it printed. */
export class CommandError extends Error {
  readonly code = 'BENCH_ERR_COMMAND';
}

/** Runs `cmd args` to completion; returns stdout, throws CommandError with its stderr unless it exits 0. */
export function run(cmd: string, args: string[], o: SpawnSyncOptions = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20, ...o });
  if (r.error) throw new CommandError(`${cmd} ${args[0] ?? ''}: ${r.error.message}`, { cause: r.error });
  if (r.status !== 0) {
    const text = `${String(r.stderr ?? '')}${String(r.stdout ?? '')}`.trim().split('\n').slice(-6).join(' | ');
    throw new CommandError(`${cmd} ${args.slice(0, 4).join(' ')} exited ${r.status ?? r.signal}: ${text}`);
  }
  return String(r.stdout ?? '');
}

/** Milliseconds `fn` took, and what it returned. */
export function timed<T>(fn: () => T): { ms: number; value: T } {
  const t0 = performance.now();
  const value = fn();
  return { ms: performance.now() - t0, value };
}

/** True when `cmd` resolves on PATH. */
export function onPath(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** The environment of the sample app as a migration workload: `sizeMiB` of ballast, `dirtyPct` of it rewritten per second. */
export function workloadEnv(sizeMiB: number, dirtyPct: number): string[] {
  return [`BALLAST_MB=${sizeMiB}`, `DIRTY_PCT_PER_SEC=${dirtyPct}`];
}

/** Resident memory of `pid` in KiB (0 when it is gone). */
function residentKiB(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Waits until `pid` holds its whole ballast in memory (the app touches every page before it listens). */
export async function waitResident(pid: number, sizeMiB: number, timeoutMs = 120_000): Promise<void> {
  const t0 = Date.now();
  let kib = 0;
  while (Date.now() - t0 < timeoutMs) {
    kib = residentKiB(pid);
    if (kib >= sizeMiB * 1024) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new CommandError(`pid ${pid} holds ${Math.round(kib / 1024)} MiB after ${timeoutMs} ms, not the ${sizeMiB} MiB ballast`);
}

/** Host pids of the live processes whose argv mentions `needle`. */
export function processesMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      if (Number(pid) !== process.pid && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(needle)) out.push(Number(pid));
    } catch { /* exited meanwhile */ }
  }
  return out;
}

/** Removes cgroup `name` (a top-level directory) and everything below it in every hierarchy; returns what stayed. */
export function removeCgroupTree(name: string): string[] {
  const left: string[] = [];
  const rmTree = (dir: string): void => {
    for (const d of readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory())) rmTree(join(dir, d.name));
    try { rmdirSync(dir); } catch { left.push(dir); }
  };
  for (const ctl of existsSync('/sys/fs/cgroup') ? readdirSync('/sys/fs/cgroup') : []) {
    const dir = join('/sys/fs/cgroup', ctl, name);
    if (existsSync(dir)) rmTree(dir);
  }
  return left;
}

/**
 * Touches `mib` MiB of fresh memory and frees it. On these VMs freed memory goes back to the host
 * (free-page reporting) and the first touch of it again is slow (a 1 GiB dump took 3.3 s cold and
 * 0.65 s warm, same container), so whichever peer ran first after an idle spell paid for all. Each
 * measurement is preceded by this, so every peer starts warm.
 */
export function warmHostMemory(mib: number): void {
  const file = `/dev/shm/ferry-bench-warm-${process.pid}`;
  try {
    run('dd', ['if=/dev/zero', `of=${file}`, 'bs=1M', `count=${mib}`, 'status=none']);
  } finally {
    rmSync(file, { force: true });
  }
}
