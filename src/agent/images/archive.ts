/**
 * Reading tar streams safely: compression sniffed from content, entry names checked for escapes,
 * and tar-stream iteration with its errors turned into IMAGE_BAD_ARCHIVE.
 */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { finished as streamFinished } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import { FerryError } from '../../errors/index.ts';
import { imageErrors } from './errors.ts';

/** Compression formats recognised by their magic bytes. */
export type Compression = 'gzip' | 'zstd' | 'xz' | 'bzip2' | 'none';

/** Names the compression of a stream from its first bytes. */
export function sniffCompression(head: Buffer): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  if (head.length >= 6 && head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
  if (head.length >= 3 && head.subarray(0, 3).toString('latin1') === 'BZh') return 'bzip2';
  return 'none';
}

/** Reads the first `n` bytes of a file. */
export async function readHead(path: string, n: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** Throws IMAGE_BAD_ARCHIVE for compressions Node cannot read (zstd, xz, bzip2). */
export function assertSupported(c: Compression, source: string): void {
  if (c === 'gzip' || c === 'none') return;
  throw imageErrors.IMAGE_BAD_ARCHIVE({ source, reason: `unsupported compression ${c} (only gzip and uncompressed tar are supported)` });
}

/** Opens a file as a decompressed byte stream (gzip or plain), sniffing the compression. */
export async function openDecompressed(path: string, source: string): Promise<{ stream: Readable; compression: Compression }> {
  const compression = sniffCompression(await readHead(path, 8));
  assertSupported(compression, source);
  const raw = createReadStream(path);
  if (compression === 'none') return { stream: raw, compression };
  const gunzip = createGunzip();
  raw.on('error', (e) => gunzip.destroy(e));
  return { stream: raw.pipe(gunzip), compression };
}

/** True when a 512-byte block looks like a tar header (ustar magic, or a valid checksum for old v7 tars). */
export function looksLikeTar(block: Buffer): boolean {
  if (block.length < 512) return false;
  if (block.subarray(257, 262).toString('latin1') === 'ustar') return true;
  const stored = parseInt(block.subarray(148, 156).toString('latin1').replace(/\0.*$/s, '').trim(), 8);
  if (!Number.isFinite(stored)) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
  return sum === stored && block[0] !== 0;
}

/**
 * Normalises a tar entry name to a relative path without `.` parts (`''` for the root); rejects
 * absolute names and any `..` component, so no entry can address anything outside its root.
 */
export function entryPath(name: string, source: string): string {
  if (name.startsWith('/')) throw imageErrors.IMAGE_BAD_ARCHIVE({ source, reason: `entry ${JSON.stringify(name)} is an absolute path` });
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw imageErrors.IMAGE_BAD_ARCHIVE({ source, reason: `entry ${JSON.stringify(name)} escapes the archive root (..)` });
  if (name.includes('\0')) throw imageErrors.IMAGE_BAD_ARCHIVE({ source, reason: `entry ${JSON.stringify(name)} contains a NUL byte` });
  return parts.join('/');
}

/** Reads an entry's content into memory, refusing more than `limit` bytes. */
export async function readEntry(entry: Readable, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of entry) {
    n += (chunk as Buffer).length;
    if (n <= limit) chunks.push(chunk as Buffer);
  }
  return n <= limit ? Buffer.concat(chunks) : undefined;
}

/** Consumes an entry's content. */
export async function drain(entry: Readable): Promise<void> {
  for await (const _ of entry) void _;
}

/** A tar entry's header, with the pax records tar-stream leaves to us; `type` is null for unknown typeflags. */
export type EntryHeader = Omit<Partial<tar.Header>, 'pax' | 'name'> & { name: string; pax?: Record<string, string> | null };

/** An entry as tar-stream yields it: a readable of its content with its header. */
type TarEntry = Readable & { header: tar.Header };

/**
 * Iterates the entries of a (decompressed) tar stream; `onEntry` must consume the entry. Errors from
 * the tar parser or decompressor become IMAGE_BAD_ARCHIVE; errors from `onEntry` pass through.
 */
export async function forEachEntry(stream: Readable, source: string, onEntry: (header: EntryHeader, entry: Readable) => Promise<void>): Promise<void> {
  const extract = tar.extract();
  const corrupt = (e: unknown) =>
    e instanceof FerryError ? e : imageErrors.IMAGE_BAD_ARCHIVE({ source, reason: `corrupt tar stream: ${(e as Error).message ?? String(e)}` }, e);
  let feedError: unknown;
  stream.on('error', (e) => {
    feedError ??= e;
    extract.destroy(e);
  });
  stream.pipe(extract);
  const it = (extract as unknown as AsyncIterable<TarEntry>)[Symbol.asyncIterator]();
  let finished = false;
  try {
    for (;;) {
      let r: IteratorResult<TarEntry>;
      try {
        r = await it.next();
      } catch (e) {
        throw corrupt(feedError ?? e);
      }
      if (r.done) break;
      try {
        await onEntry(r.value.header as unknown as EntryHeader, r.value);
      } catch (e) {
        // An entry's content stream fails when the tar or gzip stream under it does.
        throw feedError !== undefined ? corrupt(feedError) : e;
      }
    }
    finished = true;
    // Trailing bytes after the end-of-archive blocks still count for the layer's diff id.
    stream.unpipe(extract);
    stream.resume();
    await streamFinished(stream).catch((e: unknown) => {
      feedError ??= e;
    });
    if (feedError) throw corrupt(feedError);
  } finally {
    if (!finished) {
      stream.unpipe(extract);
      stream.destroy();
      await it.return?.().catch(() => undefined);
    }
  }
}

/** Wraps a tar-stream (streamx) stream as a Node Readable, so node:stream pipelines handle it. */
export function nodeReadable(s: AsyncIterable<Buffer>): Readable {
  return Readable.from(s, { objectMode: false });
}
