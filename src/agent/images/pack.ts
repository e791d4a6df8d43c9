/**
 * Writing layer tars: a directory tree (rootfs directory imports) or a list of entries (the sample
 * image), streamed into the blob store while they are produced.
 */
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';
import tar from 'tar-stream';
import { nodeReadable } from './archive.ts';

/** The header fields an entry may set (name required). */
export type TarHeader = Partial<tar.Header> & { name: string };
import type { Layout, PinSession } from './layout.ts';

/** Adds one entry, waiting until tar-stream has taken it. */
export function addEntry(pack: tar.Pack, header: TarHeader, content?: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    pack.entry(header, content ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve()));
  });
}

/** Adds a file entry whose content streams from disk. */
async function addFile(pack: tar.Pack, header: TarHeader, path: string): Promise<void> {
  let sink!: ReturnType<tar.Pack['entry']>;
  const done = new Promise<void>((resolve, reject) => {
    sink = pack.entry(header, (err) => (err ? reject(err) : resolve()));
  });
  try {
    for await (const chunk of createReadStream(path)) {
      if (!sink.write(chunk)) await once(sink, 'drain');
    }
    sink.end(undefined);
  } catch (e) {
    sink.destroy(e as Error);
    await done.catch(() => undefined);
    throw e;
  }
  await done;
}

/** Writes a tar of `fill`'s entries into the blob store; returns the blob (an uncompressed tar, so digest = diff id). */
export async function storeTar(layout: Layout, pins: PinSession, source: string, fill: (pack: tar.Pack) => Promise<void>): Promise<{ digest: string; size: number }> {
  const pack = tar.pack();
  const stored = layout.putBlobStream(nodeReadable(pack as unknown as AsyncIterable<Buffer>), source, pins);
  try {
    await fill(pack);
    pack.finalize();
  } catch (e) {
    pack.destroy(e as Error);
    await stored.catch(() => undefined);
    throw e;
  }
  return stored;
}

/** Adds a directory tree to a tar, sorted by name, keeping modes, owners, mtimes and hard links; sockets are skipped. */
export async function packDirectory(pack: tar.Pack, root: string, log: (msg: string) => void): Promise<void> {
  const inodes = new Map<string, string>();
  const walk = async (rel: string): Promise<void> => {
    const names = (await readdir(rel ? join(root, rel) : root)).sort();
    for (const name of names) {
      const r = rel ? `${rel}/${name}` : name;
      const abs = join(root, r);
      const st = await lstat(abs);
      const base = { name: r, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: st.mtime };
      if (st.isDirectory()) {
        await addEntry(pack, { ...base, name: `${r}/`, type: 'directory' });
        await walk(r);
      } else if (st.isFile()) {
        const key = `${st.dev}:${st.ino}`;
        const first = st.nlink > 1 ? inodes.get(key) : undefined;
        if (first !== undefined) {
          await addEntry(pack, { ...base, type: 'link', linkname: first });
        } else {
          if (st.nlink > 1) inodes.set(key, r);
          await addFile(pack, { ...base, type: 'file', size: st.size }, abs);
        }
      } else if (st.isSymbolicLink()) {
        await addEntry(pack, { ...base, type: 'symlink', linkname: await readlink(abs) });
      } else if (st.isFIFO()) {
        await addEntry(pack, { ...base, type: 'fifo' });
      } else if (st.isCharacterDevice() || st.isBlockDevice()) {
        const devmajor = Number((BigInt(st.rdev) >> 8n) & 0xfffn);
        const devminor = Number((BigInt(st.rdev) & 0xffn) | ((BigInt(st.rdev) >> 12n) & 0xfff00n));
        await addEntry(pack, { ...base, type: st.isCharacterDevice() ? 'character-device' : 'block-device', devmajor, devminor });
      } else {
        log(`images: ${root}: skipped socket ${r}`);
      }
    }
  };
  await walk('');
}
