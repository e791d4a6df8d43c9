/**
 * The fallback when overlayfs is unavailable: flatten unpacked layers, bottom first, into one private
 * directory, applying each layer's whiteouts (delete) and opaque dirs (empty) before copying it.
 * Only directories merge; anything else replaces what is there, so nothing is written through a
 * symlink a lower layer left (the walk is pre-order and uses lstat).
 */
import { constants } from 'node:fs';
import { copyFile, lchown, link, lstat, lutimes, mkdir, readdir, readlink, rm, symlink, unlink, chmod } from 'node:fs/promises';
import { join } from 'node:path';

/** One layer to copy: its unpacked tree and the whiteouts/opaque dirs found while unpacking. */
export interface CopyLayer {
  readonly root: string;
  readonly whiteouts: readonly string[];
  readonly opaque: readonly string[];
}

/** The path of `rel` under `root` when every parent is a real directory; undefined otherwise (nothing to touch). */
async function realPath(root: string, rel: string): Promise<string | undefined> {
  const parts = rel.split('/').filter(Boolean);
  let cur = root;
  for (let i = 0; i < parts.length - 1; i++) {
    cur = join(cur, parts[i]!);
    const st = await lstat(cur).catch(() => undefined);
    if (!st || !st.isDirectory()) return undefined;
  }
  return parts.length ? join(cur, parts[parts.length - 1]!) : root;
}

/** Copies the layers into `target` (an existing directory). */
export async function flattenLayers(layers: readonly CopyLayer[], target: string): Promise<void> {
  for (const layer of layers) {
    for (const w of layer.whiteouts) {
      const p = await realPath(target, w);
      if (p && p !== target) await rm(p, { recursive: true, force: true });
    }
    for (const o of layer.opaque) {
      const p = await realPath(target, o);
      const st = p ? await lstat(p).catch(() => undefined) : undefined;
      if (p && st?.isDirectory()) for (const n of await readdir(p)) await rm(join(p, n), { recursive: true, force: true });
    }
    await copyTree(layer.root, target, new Set(layer.whiteouts));
  }
}

async function copyTree(srcRoot: string, dstRoot: string, skip: Set<string>): Promise<void> {
  const inodes = new Map<string, string>();
  const dirTimes: [string, Date][] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(rel ? join(srcRoot, rel) : srcRoot)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      if (skip.has(r)) continue;
      const src = join(srcRoot, r);
      const dst = join(dstRoot, r);
      const s = await lstat(src);
      const t = await lstat(dst).catch(() => undefined);
      if (s.isDirectory()) {
        if (t && !t.isDirectory()) await unlink(dst);
        if (!t || !t.isDirectory()) await mkdir(dst, 0o700);
        await lchown(dst, s.uid, s.gid);
        await chmod(dst, s.mode & 0o7777);
        await walk(r);
        dirTimes.push([dst, s.mtime]);
        continue;
      }
      if (t) await rm(dst, { recursive: true, force: true });
      if (s.isFile()) {
        const key = `${s.dev}:${s.ino}`;
        const first = s.nlink > 1 ? inodes.get(key) : undefined;
        if (first !== undefined) {
          await link(first, dst);
          continue;
        }
        await copyFile(src, dst, constants.COPYFILE_EXCL);
        await lchown(dst, s.uid, s.gid);
        await chmod(dst, s.mode & 0o7777); // after chown, which clears setuid/setgid
        await lutimes(dst, s.atime, s.mtime);
        if (s.nlink > 1) inodes.set(key, dst);
      } else if (s.isSymbolicLink()) {
        await symlink(await readlink(src), dst);
        await lchown(dst, s.uid, s.gid);
        await lutimes(dst, s.atime, s.mtime);
      }
      // whiteout devices are handled above; unpacking keeps no other special files
    }
  };
  await walk('');
  for (const [d, mtime] of dirTimes) await lutimes(d, mtime, mtime);
}
