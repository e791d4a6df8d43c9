/**
 * What an import source is, decided by content and never by file name: an OCI layout directory, a
 * rootfs directory, or a tar file (plain or gzip) holding an OCI layout (`oci-archive`), a
 * docker-archive (`manifest.json` + configs + layer tars) or a root filesystem.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { assertSupported, drain, nodeReadable, entryPath, forEachEntry, looksLikeTar, readEntry, readHead, sniffCompression, type Compression } from './archive.ts';
import { imageErrors } from './errors.ts';
import { HashTap, type Layout, type PinSession } from './layout.ts';

/** The kinds of import source. */
export type SourceKind = 'oci-dir' | 'rootfs-dir' | 'oci-archive' | 'docker-archive' | 'rootfs-tar';

/** Small files and links of a tar archive, read in one pass to classify it. */
export interface ArchiveScan {
  readonly kind: 'oci-archive' | 'docker-archive' | 'rootfs-tar';
  readonly compression: Compression;
  /** Small JSON-ish files by normalised name (index.json, manifest.json, configs, manifest blobs). */
  readonly files: Map<string, Buffer>;
  /** Sizes of `blobs/sha256/<hex>` entries by name, buffered or not. */
  readonly blobSizes: Map<string, number>;
  /** Symlinks and hard links near the top of the archive: name → target name (undefined if it escapes). */
  readonly links: Map<string, string | undefined>;
  /** sha256 of the file as it is, and of its uncompressed tar stream. */
  readonly rawDigest: string;
  readonly diffId: string;
}

const JSON_LIMIT = 8 << 20;
const BUFFER_BUDGET = 64 << 20;
const BLOB_RE = /^blobs\/sha256\/[0-9a-f]{64}$/;

/** Classifies a source path (directory or file); throws IMAGE_BAD_ARCHIVE when it is neither. */
export async function sourceKind(path: string): Promise<'dir-oci' | 'dir-rootfs' | 'file'> {
  const st = await stat(path).catch(() => undefined);
  if (!st) throw imageErrors.IMAGE_BAD_ARCHIVE({ source: path, reason: 'no such file or directory' });
  if (st.isDirectory()) {
    const marker = await stat(join(path, 'oci-layout')).catch(() => undefined);
    const index = await stat(join(path, 'index.json')).catch(() => undefined);
    return marker?.isFile() && index?.isFile() ? 'dir-oci' : 'dir-rootfs';
  }
  if (!st.isFile()) throw imageErrors.IMAGE_BAD_ARCHIVE({ source: path, reason: 'not a regular file or directory' });
  return 'file';
}

/** Opens a tar file decompressed, with taps hashing the raw and the uncompressed bytes. */
function openTar(path: string, compression: Compression, onBytes?: (n: number) => void): { stream: Readable; raw: HashTap; plain: HashTap } {
  const raw = new HashTap(onBytes);
  const plain = new HashTap();
  const file = createReadStream(path);
  file.on('error', (e) => raw.destroy(e));
  let s: Readable = file.pipe(raw);
  if (compression === 'gzip') {
    const gunzip = createGunzip();
    s.on('error', (e) => gunzip.destroy(e));
    s = s.pipe(gunzip);
  }
  s.on('error', (e) => plain.destroy(e));
  return { stream: s.pipe(plain), raw, plain };
}

/** Reads the first uncompressed block of a file. */
async function firstBlock(path: string, compression: Compression): Promise<Buffer> {
  if (compression === 'none') return readHead(path, 512);
  const chunks: Buffer[] = [];
  let n = 0;
  const s = createReadStream(path).pipe(createGunzip());
  try {
    for await (const c of s) {
      chunks.push(c as Buffer);
      n += (c as Buffer).length;
      if (n >= 512) break;
    }
  } catch {
    // a broken gzip stream: the caller reports "unknown format"
  } finally {
    s.destroy();
  }
  return Buffer.concat(chunks).subarray(0, 512);
}

/** Reads a tar file once: checks every name, keeps small metadata files, and decides its kind. */
export async function scanArchive(path: string, onBytes?: (n: number) => void): Promise<ArchiveScan> {
  const compression = sniffCompression(await readHead(path, 8));
  assertSupported(compression, path);
  if (!looksLikeTar(await firstBlock(path, compression))) {
    throw imageErrors.IMAGE_BAD_ARCHIVE({ source: path, reason: 'unknown format: not a tar archive (plain or gzip), an OCI layout or a directory' });
  }
  const files = new Map<string, Buffer>();
  const blobSizes = new Map<string, number>();
  const links = new Map<string, string | undefined>();
  const tops = new Set<string>();
  let budget = BUFFER_BUDGET;
  const { stream, raw, plain } = openTar(path, compression, onBytes);
  await forEachEntry(stream, path, async (h, entry) => {
    const rel = entryPath(h.name, path);
    tops.add(rel.split('/')[0]!);
    const type = h.type ?? 'unknown'; // tar-stream gives null for typeflags it does not know (e.g. GNU sparse)
    const topLevel = !rel.includes('/');
    if ((type === 'file' || type === 'contiguous-file') && rel !== '') {
      const isBlob = BLOB_RE.test(rel);
      if (isBlob) blobSizes.set(rel, h.size ?? 0);
      const wanted = (topLevel && (rel.endsWith('.json') || rel === 'oci-layout' || rel === 'repositories')) || isBlob;
      if (wanted && (h.size ?? 0) <= Math.min(JSON_LIMIT, budget)) {
        const buf = await readEntry(entry, JSON_LIMIT);
        // Keep blobs only when they look like JSON: manifests and configs, not layers.
        if (buf && (!isBlob || /^\s*[{[]/.test(buf.subarray(0, 64).toString('latin1')))) {
          files.set(rel, buf);
          budget -= buf.length;
        }
        return;
      }
    } else if ((type === 'symlink' || type === 'link') && rel.split('/').length <= 3) {
      const target = type === 'link' ? h.linkname ?? '' : posix.join(posix.dirname(rel), h.linkname ?? '');
      const norm = posix.normalize(target);
      links.set(rel, norm.startsWith('../') || norm === '..' || norm.startsWith('/') ? undefined : norm.replace(/^\.\//, ''));
    }
    await drain(entry);
  });
  let kind: ArchiveScan['kind'] = 'rootfs-tar';
  if (tops.has('oci-layout') && files.has('index.json')) kind = 'oci-archive';
  else if (files.has('manifest.json') && /^\s*\[/.test(files.get('manifest.json')!.toString())) kind = 'docker-archive';
  return { kind, compression, files, blobSizes, links, rawDigest: raw.digest(), diffId: plain.digest() };
}

/** Follows archive links from `name` to the entry that holds the data. */
export function resolveArchiveName(scan: ArchiveScan, name: string, source: string): string {
  let cur = entryPath(name, source);
  for (let hops = 0; scan.links.has(cur); hops++) {
    const next = scan.links.get(cur);
    if (next === undefined || hops > 8) throw imageErrors.IMAGE_BAD_ARCHIVE({ source, reason: `link ${cur} escapes the archive or loops` });
    cur = next;
  }
  return cur;
}

/**
 * Streams the named entries of a tar file into the blob store (second pass over an archive).
 * `wanted` maps entry names to the digest they must have (or undefined when only the content defines it).
 */
export async function extractBlobs(
  path: string,
  compression: Compression,
  wanted: Map<string, { digest?: string; size?: number }>,
  layout: Layout,
  pins: PinSession,
  onBytes?: (n: number) => void,
): Promise<Map<string, { digest: string; size: number }>> {
  const out = new Map<string, { digest: string; size: number }>();
  const { stream } = openTar(path, compression, onBytes);
  await forEachEntry(stream, path, async (h, entry) => {
    const rel = entryPath(h.name, path);
    const want = wanted.get(rel);
    if (want && !out.has(rel) && h.type === 'file') {
      out.set(rel, await layout.putBlobStream(nodeReadable(entry), path, pins, want));
      return;
    }
    await drain(entry);
  });
  for (const name of wanted.keys()) {
    if (!out.has(name)) throw imageErrors.IMAGE_BAD_ARCHIVE({ source: path, reason: `missing blob: the archive has no file ${name}` });
  }
  return out;
}
