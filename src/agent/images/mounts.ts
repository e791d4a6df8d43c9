/**
 * Mount plumbing for container root filesystems: reading /proc/self/mountinfo, mounting overlayfs,
 * unmounting (lazily when busy), and probing once whether this kernel can overlay at all.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Decodes the octal escapes mountinfo uses for spaces, tabs, newlines and backslashes. */
function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Every mount point of this mount namespace, in mount order. */
export async function mountPoints(): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => unescape(l.split(' ')[4] ?? ''));
}

/** Mount points at or below `path`, deepest first. */
export async function mountsUnder(path: string): Promise<string[]> {
  const all = await mountPoints();
  const hits = all.filter((m) => m === path || m.startsWith(`${path}/`));
  return [...new Set(hits)].sort((a, b) => b.length - a.length);
}

/** Unmounts everything at or below `path`; a busy mount is detached lazily. Throws if anything stays. */
export async function unmountAll(path: string): Promise<void> {
  for (let round = 0; round < 8; round++) {
    const mps = await mountsUnder(path);
    if (mps.length === 0) return;
    for (const mp of mps) {
      try {
        await run('umount', [mp]);
      } catch {
        await run('umount', ['-l', mp]).catch(() => undefined);
      }
    }
  }
  const left = await mountsUnder(path);
  if (left.length > 0) throw new Error(`still mounted: ${left.join(', ')}`);
}

/**
 * The mount(2) data of an overlay. Lower dirs go top first; when their paths would not fit in one
 * mount option page they are passed as short relative links (`linkDir/0`, `1`, …) and the mount must
 * be made from `cwd` = linkDir.
 */
export async function overlayOptions(lowers: string[], upper: string, work: string, target: string, linkDir: string): Promise<{ options: string; cwd?: string }> {
  const bad = [...lowers, upper, work, target].find((p) => /[,:\s\\]/.test(p));
  if (bad) throw new Error(`path ${JSON.stringify(bad)} has a character overlayfs options cannot carry (, : space \\)`);
  let lowerdir = lowers.join(':');
  let cwd: string | undefined;
  if (lowerdir.length + upper.length + work.length > 3500) {
    await rm(linkDir, { recursive: true, force: true });
    await mkdir(linkDir, { mode: 0o700 });
    for (let i = 0; i < lowers.length; i++) await symlink(lowers[i]!, join(linkDir, String(i)));
    lowerdir = lowers.map((_, i) => String(i)).join(':');
    cwd = linkDir;
  }
  return { options: `lowerdir=${lowerdir},upperdir=${upper},workdir=${work}`, ...(cwd ? { cwd } : {}) };
}

/** Mounts an overlay (see overlayOptions). */
export async function mountOverlay(lowers: string[], upper: string, work: string, target: string, linkDir: string): Promise<void> {
  const { options, cwd } = await overlayOptions(lowers, upper, work, target, linkDir);
  await run('mount', ['-t', 'overlay', 'overlay', '-o', options, target], { cwd });
}

/** Whether overlayfs with whiteouts and opaque dirs works here; `scratch` is an empty dir to play in (removed after). */
export async function probeOverlay(scratch: string, log: (msg: string) => void): Promise<boolean> {
  const d = (n: string) => join(scratch, n);
  try {
    await mkdir(scratch, { recursive: true, mode: 0o700 });
    for (const n of ['lower', 'upper', 'work', 'merged']) await mkdir(d(n));
    await writeFile(join(d('lower'), 'probe'), 'ok');
    await mountOverlay([d('lower')], d('upper'), d('work'), d('merged'), d('links'));
    try {
      return (await readFile(join(d('merged'), 'probe'), 'utf8')) === 'ok';
    } finally {
      await unmountAll(d('merged'));
    }
  } catch (e) {
    log(`images: overlayfs is not usable here (${(e as Error).message.trim()}); container root filesystems will be copies`);
    return false;
  } finally {
    await rm(scratch, { recursive: true, force: true }).catch(() => undefined);
  }
}
