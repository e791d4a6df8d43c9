/**
 * Test support for the runtime's real-runc tests (not part of the public face): prerequisite
 * checks, building ferry-shim from source, a busybox rootfs owned by the mapped root, cleanup.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, statSync, symlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (this file is src/agent/runtime/testkit.ts). */
export const REPO = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
/** The shim's source. */
export const SHIM_SOURCE = join(REPO, 'native/shim/ferry-shim.c');
/** CRIU wrapper installed by scripts/setup. */
export const CRIU = '/opt/ferry/bin/criu';
/** Host ids the container's root maps to. */
export const HOST_ROOT = 100000;

function which(bin: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;
}

/** Why real-runc tests cannot run here, or undefined when they can. */
export function missingPrerequisite(needs: { runc?: boolean; criu?: boolean } = {}): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root';
  if (!which('gcc')) return 'needs gcc to build ferry-shim';
  if (needs.runc !== false && !which('runc')) return 'needs runc';
  if (needs.runc !== false && !existsSync('/bin/busybox')) return 'needs /bin/busybox (busybox-static)';
  if (needs.criu && !existsSync(CRIU)) return `needs CRIU at ${CRIU} (scripts/setup)`;
  return undefined;
}

/** Options for node:test: skip with the reason outside CI; under CI=true a missing prerequisite fails. */
export function prerequisiteGate(reason: string | undefined): { skip?: string } {
  return reason !== undefined && process.env.CI !== 'true' ? { skip: reason } : {};
}

/** Compiles ferry-shim the way scripts/setup does, into `dir`; returns its path. */
export function buildShim(dir: string): string {
  const out = join(dir, 'ferry-shim');
  execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-static', '-o', out, SHIM_SOURCE], { stdio: 'pipe' });
  return out;
}

/** A busybox rootfs under `dir/rootfs`, owned by the mapped root (100000). */
export function makeRootfs(dir: string, applets: string[]): string {
  const rootfs = join(dir, 'rootfs');
  for (const d of ['bin', 'proc', 'dev', 'sys', 'tmp', 'etc']) mkdirSync(join(rootfs, d), { recursive: true });
  copyFileSync('/bin/busybox', join(rootfs, 'bin/busybox'));
  chmodSync(join(rootfs, 'bin/busybox'), 0o755);
  for (const a of applets) symlinkSync('busybox', join(rootfs, 'bin', a));
  execFileSync('chown', ['-R', `${HOST_ROOT}:${HOST_ROOT}`, rootfs]);
  return rootfs;
}

/** Pids of live (non-zombie) processes whose command line contains `needle`. */
export function processesWith(needle: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8');
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      if (state !== 'Z' && cmdline.includes(needle)) out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Existing cgroup directories named `parent` under any hierarchy. */
export function cgroupParentDirs(parent: string): string[] {
  const dirs = [join('/sys/fs/cgroup', parent)];
  for (const h of readdirSync('/sys/fs/cgroup')) dirs.push(join('/sys/fs/cgroup', h, parent));
  return dirs.filter((d) => existsSync(d) && statSync(d).isDirectory());
}

/** Removes cgroup directories bottom-up (cgroupfs only lets empty directories go). */
export function removeCgroupTree(dir: string): void {
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) removeCgroupTree(join(dir, e.name));
  rmdirSync(dir);
}
