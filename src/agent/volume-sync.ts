/**
 * Host-local named volumes move with a migrated container, in two passes of GNU tar's
 * listed-incremental archives: a base archive of the whole volume while the container runs (the
 * target unpacks it into a staging directory before the freeze), and during the freeze a delta of
 * what changed since — files whose mtime or ctime moved, new files, and the names of files that are
 * gone, which unpacking with `--listed-incremental=/dev/null` deletes. Ownership (numeric ids, as
 * the container's user namespace maps them), modes, xattrs and hard links are kept.
 */
import { spawnAhead } from './spawn-ahead.ts';
import { copyFile, mkdir, stat } from 'node:fs/promises';

/** Runs GNU tar with `args`; rejects with its stderr. */
export function tar(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawnAhead('tar', args, { noInput: true });
    p.stdout?.resume();
    let err = '';
    p.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`tar ${args[0]}: ${err.trim() || `exit ${code}`}`))));
  });
}

const KEEP = ['--numeric-owner', '--xattrs', '--xattrs-include=*', '--acls'];

/**
 * The base pass: archives all of `dir` into `archive` and records what it saw in `snapshot` (the
 * delta pass compares against it). Returns the archive's size.
 */
export async function packBase(dir: string, snapshot: string, archive: string): Promise<number> {
  await tar(['-c', ...KEEP, `--listed-incremental=${snapshot}`, '-f', archive, '-C', dir, '.']);
  return (await stat(archive)).size;
}

/**
 * The delta pass (the container frozen): archives what changed in `dir` since the base pass,
 * including which files are gone. `snapshot` stays as the base pass left it (a copy is updated), so
 * the pass can be repeated. Returns the archive's size.
 */
export async function packDelta(dir: string, snapshot: string, archive: string): Promise<number> {
  const work = `${snapshot}.delta`;
  await copyFile(snapshot, work);
  await tar(['-c', ...KEEP, `--listed-incremental=${work}`, '-f', archive, '-C', dir, '.']);
  return (await stat(archive)).size;
}

/** Unpacks a base or delta archive into `dir` (created); a delta also removes the files that are gone. */
export async function unpack(archive: string, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await tar(['-x', ...KEEP, '-p', '--listed-incremental=/dev/null', '-f', archive, '-C', dir]);
}
