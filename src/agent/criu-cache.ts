/**
 * CRIU's cache of kernel facts. Every CRIU run first probes the kernel ("kerndat": the vDSO layout,
 * userfaultfd, iptables, network namespaces and more; 30–60 ms here, and it forks a dozen helpers)
 * unless `/run/criu.kdat` already holds the answers. CRIU writes that file itself, but only when
 * /run is a tmpfs, so that a reboot into another kernel cannot leave stale facts behind. On a host
 * whose /run lives on disk (this project's VMs) every CRIU run probes again, and a post-copy freeze
 * runs CRIU four times (runc's feature check, the dump, the target's lazy-pages daemon, the restore).
 *
 * There the agent makes the cache at every start: `criu check` in a private mount namespace with a
 * tmpfs on /run writes it, and the agent moves it into the real /run. A reboot into another kernel
 * is followed by an agent start before any migration, which writes the file anew; CRIU itself
 * drops a file written by another CRIU version ("Stale … file") and probes instead.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { chmod, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { isTmpfs } from './migrate.ts';

const run = promisify(execFile);

/** Where CRIU (run as root) looks for its cache; compiled into CRIU, not configurable. */
export const CRIU_RUN_DIR = '/run';
export const CRIU_CACHE_FILE = join(CRIU_RUN_DIR, 'criu.kdat');
/**
 * The cache of CRIU runs with Ferry's clean-pages shim active (native/criu/clean-pages.c redirects
 * CRIU's own name to it): there the kernel "tracks dirty pages", which must not reach other runs.
 */
export const CRIU_CLEAN_CACHE_FILE = join(CRIU_RUN_DIR, 'criu-ferry-clean.kdat');
/** The shim's switch: a file of clean pages; /dev/null vouches for none (for checks). */
const CLEAN_ENV = { FERRY_CRIU_CLEAN: '/dev/null' };

export type CriuCacheResult =
  | { readonly status: 'criu-writes-it' }
  | { readonly status: 'written'; readonly bytes: number }
  | { readonly status: 'failed'; readonly reason: string };

/**
 * Makes sure CRIU at `criuPath` finds its kernel-facts cache. Nothing to do when /run is a tmpfs
 * (CRIU keeps the file there itself); otherwise the file is written anew. Never throws: without the
 * cache CRIU only runs slower.
 */
export async function primeCriuCache(criuPath: string, o: { runDir?: string; cleanPages?: boolean } = {}): Promise<CriuCacheResult> {
  const runDir = o.runDir ?? CRIU_RUN_DIR;
  if (isTmpfs(runDir)) return { status: 'criu-writes-it' };
  const name = basename(o.cleanPages ? CRIU_CLEAN_CACHE_FILE : CRIU_CACHE_FILE);
  let kdat: Buffer;
  try {
    // unshare(1) makes the new mount namespace's mounts private, so the tmpfs stays in it.
    const script = `mount -t tmpfs -o size=1m,mode=0755 ferry-criu-kdat /run && "$0" check >/dev/null 2>&1; cat /run/${name}`;
    ({ stdout: kdat } = await run('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, criuPath], {
      encoding: 'buffer', timeout: 30_000, ...(o.cleanPages ? { env: { ...process.env, ...CLEAN_ENV } } : {}),
    }));
  } catch (e) {
    return { status: 'failed', reason: `criu check in a private /run: ${(e as Error).message.split('\n')[0]}` };
  }
  if (kdat.length === 0) return { status: 'failed', reason: `${criuPath} check wrote no cache${o.cleanPages ? ' (no clean-pages shim?)' : ''}` };
  const file = join(runDir, name);
  const tmp = join(runDir, `.${name}.ferry-${randomBytes(4).toString('hex')}`);
  try {
    await writeFile(tmp, kdat, { mode: 0o600 });
    await chmod(tmp, 0o600);
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    return { status: 'failed', reason: `writing ${file}: ${(e as Error).message}` };
  }
  // A CRIU that probed here before (e.g. `criu check` in scripts/setup) opened `<name>.tmp` to save
  // its facts, found /run not a tmpfs and left the file, empty: nothing else would ever remove it.
  const stale = `${file}.tmp`;
  if (existsSync(stale) && statSync(stale).size === 0) await rm(stale, { force: true });
  return { status: 'written', bytes: kdat.length };
}

/**
 * Whether CRIU at `criuPath` runs with Ferry's clean-pages shim (native/criu/clean-pages.c, preloaded
 * by the wrapper scripts/setup writes): then an incremental dump can leave out the pages the write
 * tracker vouches for. Asks CRIU itself (`check --feature mem_dirty_track` with the shim switched on).
 */
export async function cleanPagesSupported(criuPath: string): Promise<boolean> {
  try {
    await run(criuPath, ['check', '--feature', 'mem_dirty_track'], { timeout: 30_000, env: { ...process.env, ...CLEAN_ENV } });
    return true;
  } catch {
    return false;
  }
}
