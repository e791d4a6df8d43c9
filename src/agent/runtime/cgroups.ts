/**
 * Direct cgroup reads for stats and OOM detection, and removal of the cgroup directories runc
 * leaves behind. Works on cgroup v1 (one hierarchy per controller, hybrid included) and v2.
 */
import { existsSync } from 'node:fs';
import { readFile, readdir, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ContainerStats } from './types.ts';

/** Where the cgroup filesystems are mounted. */
export const CGROUP_ROOT = '/sys/fs/cgroup';

/** Values at or above this mean "no limit" (v1 writes PAGE_COUNTER_MAX × page size, ~2^63). */
const UNLIMITED = 2 ** 62;

/** The cgroup version runc uses here: 2 only on a pure v2 host (the root holds `cgroup.controllers`). */
export function cgroupVersion(root = CGROUP_ROOT): 1 | 2 {
  return existsSync(join(root, 'cgroup.controllers')) ? 2 : 1;
}

async function readText(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
}

async function readNumber(file: string): Promise<number> {
  const text = (await readText(file))?.trim();
  if (text === undefined || text === '' || text === 'max') return 0;
  const n = Number(text);
  return Number.isFinite(n) ? n : 0;
}

/** Reads `key value` lines (cpu.stat, memory.events, memory.oom_control) into a map. */
export function parseKeyValues(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && /^\d+$/.test(v)) out.set(k, Number(v));
  }
  return out;
}

/** Treats the kernel's "unlimited" values as 0. */
export function limitOrZero(n: number): number {
  return n >= UNLIMITED ? 0 : n;
}

/** CPU, memory and pids figures of one cgroup path (`/<parent>/<id>`). */
export async function readStats(cgroupsPath: string, root = CGROUP_ROOT): Promise<ContainerStats> {
  const time = new Date().toISOString();
  if (cgroupVersion(root) === 2) {
    const dir = join(root, cgroupsPath);
    const cpu = parseKeyValues((await readText(join(dir, 'cpu.stat'))) ?? '');
    const mem = parseKeyValues((await readText(join(dir, 'memory.stat'))) ?? '');
    return {
      time,
      cpuUsageNs: (cpu.get('usage_usec') ?? 0) * 1000,
      memoryUsageBytes: await readNumber(join(dir, 'memory.current')),
      ...(mem.has('anon') ? { memoryDumpBytes: (mem.get('anon') ?? 0) + (mem.get('shmem') ?? 0) } : {}),
      memoryLimitBytes: limitOrZero(await readNumber(join(dir, 'memory.max'))),
      pids: await readNumber(join(dir, 'pids.current')),
      cgroupVersion: 2,
    };
  }
  const mem = parseKeyValues((await readText(join(root, 'memory', cgroupsPath, 'memory.stat'))) ?? '');
  return {
    time,
    cpuUsageNs: await readNumber(join(root, 'cpuacct', cgroupsPath, 'cpuacct.usage')),
    memoryUsageBytes: await readNumber(join(root, 'memory', cgroupsPath, 'memory.usage_in_bytes')),
    ...(mem.has('total_rss') ? { memoryDumpBytes: (mem.get('total_rss') ?? 0) + (mem.get('total_shmem') ?? 0) } : {}),
    memoryLimitBytes: limitOrZero(await readNumber(join(root, 'memory', cgroupsPath, 'memory.limit_in_bytes'))),
    pids: await readNumber(join(root, 'pids', cgroupsPath, 'pids.current')),
    cgroupVersion: 1,
  };
}

/** How many processes the OOM killer ended in the cgroup; undefined when it is gone. */
export async function oomKillCount(cgroupsPath: string, root = CGROUP_ROOT): Promise<number | undefined> {
  const file = cgroupVersion(root) === 2
    ? join(root, cgroupsPath, 'memory.events')
    : join(root, 'memory', cgroupsPath, 'memory.oom_control');
  const text = await readText(file);
  if (text === undefined) return undefined;
  return parseKeyValues(text).get('oom_kill') ?? 0;
}

/** The pids of every process in the cgroup (pids controller on v1, the unified tree on v2). */
export async function cgroupPids(cgroupsPath: string, root = CGROUP_ROOT): Promise<number[]> {
  const file = cgroupVersion(root) === 2 ? join(root, cgroupsPath, 'cgroup.procs') : join(root, 'pids', cgroupsPath, 'cgroup.procs');
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).map(Number).filter((n) => Number.isInteger(n) && n > 0);
}

/** Whether the cgroup still exists (memory hierarchy on v1, the unified one on v2). */
export function cgroupExists(cgroupsPath: string, root = CGROUP_ROOT): boolean {
  return existsSync(cgroupVersion(root) === 2 ? join(root, cgroupsPath) : join(root, 'memory', cgroupsPath));
}

/** Every directory this cgroup path has: one per v1 hierarchy (named ones too), or the v2 one. */
export async function cgroupDirs(cgroupsPath: string, root = CGROUP_ROOT): Promise<string[]> {
  const candidates = [join(root, cgroupsPath)];
  if (cgroupVersion(root) === 1) {
    for (const entry of await readdir(root, { withFileTypes: true }).catch(() => [])) {
      if (entry.isDirectory() || entry.isSymbolicLink()) candidates.push(join(root, entry.name, cgroupsPath));
    }
  }
  return candidates.filter((dir) => existsSync(dir));
}

async function rmdirTree(dir: string): Promise<void> {
  // A cgroup directory only goes away once its child cgroups have (files inside cannot be unlinked).
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (entry.isDirectory()) await rmdirTree(join(dir, entry.name));
  }
  await rmdir(dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
  });
}

/** Removes the cgroup directories of a path (and child cgroups); returns those that stayed, with why. */
export async function removeCgroup(cgroupsPath: string, root = CGROUP_ROOT): Promise<string[]> {
  const left: string[] = [];
  if (cgroupsPath.split('/').filter(Boolean).length === 0) return left;
  for (const dir of await cgroupDirs(cgroupsPath, root)) {
    try {
      await rmdirTree(dir);
    } catch (e) {
      left.push(`${dir}: ${(e as Error).message}`);
    }
  }
  return left;
}
