/**
 * Moving a migration's files from the source agent to the target: one HTTP response carries every
 * file as a frame
 *
 *   {"path":"image/pages-1.img","size":N,"mode":420,"offset":0}\n  <size - offset bytes>  <sha256 hex>\n
 *
 * and ends with `{"end":true}\n`. Both sides hash while the bytes flow (sha256 of the whole file), so
 * a file that arrives different from what was sent is refused. A stream that breaks is resumed: the
 * receiver asks again with the files it already has and the offset it reached in the current one.
 * Backpressure is end to end (the sender reads a file only as fast as the socket drains; the receiver
 * reads the socket only as fast as it writes), and the sender can be limited to a bandwidth.
 */
import { createHash } from 'node:crypto';
import { closeSync, createReadStream, fsyncSync, mkdirSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { request, type IncomingMessage } from 'node:http';
import { dirname, join, normalize, relative, sep } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';

/** One file of a transfer. */
export interface FileEntry {
  /** Relative to the transfer's directory, `/`-separated. */
  readonly path: string;
  readonly size: number;
  readonly mode: number;
}

/** Where a broken transfer resumes. */
export interface ResumePoint {
  /** Files that arrived whole. */
  readonly done: readonly string[];
  /** The file that was arriving, and how many of its bytes are on disk. */
  readonly partial?: { readonly path: string; readonly offset: number };
}

/** Options of the sender. */
export interface SendOptions {
  readonly resume?: ResumePoint;
  /** Bytes per second; unlimited when absent or 0. */
  readonly bytesPerSec?: number;
}

/** Regular files under `dir`, sorted by path (directories are implied by the paths). */
export async function listFiles(dir: string): Promise<FileEntry[]> {
  const files = (await readdir(dir, { withFileTypes: true, recursive: true })).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
  const out = await Promise.all(files.map(async (abs): Promise<FileEntry> => {
    const st = await lstat(abs);
    return { path: relative(dir, abs).split(sep).join('/'), size: st.size, mode: st.mode & 0o7777 };
  }));
  return out.sort((a, b) => a.path.localeCompare(b.path));
}

/** Rejects paths that would leave the transfer's directory. */
export function safePath(p: string): string {
  const n = normalize(p);
  if (p === '' || n.startsWith('..') || n.startsWith('/') || n.split(sep).includes('..')) throw new Error(`unsafe path in transfer: ${JSON.stringify(p)}`);
  return n;
}

/** Files up to this size are read in one call instead of streamed. */
const SMALL_FILE = 1 << 20;

/** Streams the files of `dir` (as listed by listFiles) in frames; see the module comment. */
export function sendFiles(dir: string, o: SendOptions = {}): Readable {
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  const done = new Set(o.resume?.done ?? []);
  const t0 = Date.now();
  let sent = 0;
  /** Writes with backpressure and, when limited, at no more than bytesPerSec on average. */
  const put = async (b: Buffer | string): Promise<void> => {
    if (!out.write(b)) await new Promise<void>((r) => out.once('drain', () => r()));
    sent += b.length;
    if (o.bytesPerSec) {
      const due = (1000 * sent) / o.bytesPerSec - (Date.now() - t0);
      if (due > 5) await sleep(due);
    }
  };
  void (async () => {
    for (const f of await listFiles(dir)) {
      if (done.has(f.path)) continue;
      const offset = o.resume?.partial?.path === f.path ? Math.min(o.resume.partial.offset, f.size) : 0;
      const hash = createHash('sha256');
      const abs = join(dir, safePath(f.path));
      // A resumed file's digest covers it whole: hash the part the receiver already has first.
      if (offset > 0) for await (const c of createReadStream(abs, { end: offset - 1 })) hash.update(c as Buffer);
      await put(`${JSON.stringify({ ...f, offset })}\n`);
      if (f.size > offset && f.size <= SMALL_FILE) {
        // A CRIU image is mostly dozens of small files: one read each, not a stream's four
        // thread-pool round trips (open, read, read to EOF, close), which cost ~1 ms per file.
        const b = readFileSync(abs).subarray(offset);
        if (b.length !== f.size - offset) throw new Error(`${f.path} changed while it was sent (${f.size} bytes listed, ${b.length + offset} read)`);
        hash.update(b);
        await put(b);
      } else if (f.size > offset) {
        for await (const c of createReadStream(abs, { start: offset, highWaterMark: 1 << 20 })) {
          hash.update(c as Buffer);
          await put(c as Buffer);
        }
      }
      await put(`${hash.digest('hex')}\n`);
    }
    await put('{"end":true}\n');
    out.end();
  })().catch((e: Error) => out.destroy(e));
  return out;
}

/** Progress of a receive: bytes written so far in this call. */
export type ProgressFn = (bytes: number) => void;

/**
 * Reads frames from `src` into `dir`. Resolves with the resume point when the stream ends early
 * (the caller asks again from there) or `complete: true` after the end frame. A digest mismatch is
 * an error (the file is not kept).
 */
export async function receiveFiles(src: AsyncIterable<Buffer>, dir: string, from: ResumePoint = { done: [] }, progress?: ProgressFn): Promise<{ complete: boolean; resume: ResumePoint }> {
  const done = [...from.done];
  let header: { path: string; size: number; mode: number; offset: number } | undefined;
  let fd = -1;
  let left = 0;
  let hash = createHash('sha256');
  let pending: Buffer = Buffer.alloc(0);
  let written = 0;
  let position = 0;
  const startFile = (h: { path: string; size: number; mode: number; offset: number }): void => {
    const abs = join(dir, safePath(h.path));
    mkdirSync(dirname(abs), { recursive: true, mode: 0o755 });
    hash = createHash('sha256');
    if (h.offset > 0) {
      if (from.partial?.path !== h.path || from.partial.offset !== h.offset) throw new Error(`transfer resumed ${h.path} at ${h.offset}, not where it stopped`);
      fd = openSync(abs, 'r+', h.mode);
      // The bytes already here count in the digest.
      const buf = Buffer.alloc(1 << 20);
      for (let pos = 0; pos < h.offset;) {
        const n = Math.min(buf.length, h.offset - pos);
        const got = readSync(fd, buf, 0, n, pos);
        if (got <= 0) throw new Error(`${h.path}: only ${pos} of ${h.offset} bytes on disk to resume from`);
        hash.update(buf.subarray(0, got));
        pos += got;
      }
    } else {
      fd = openSync(abs, 'w', h.mode);
    }
    position = h.offset;
    left = h.size - h.offset;
  };
  const resumePoint = (): ResumePoint => ({ done, ...(header ? { partial: { path: header.path, offset: position } } : {}) });
  try {
    for await (const chunk of src) {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      for (;;) {
        if (!header) {
          const nl = pending.indexOf(10);
          if (nl < 0) break;
          const h = JSON.parse(pending.subarray(0, nl).toString('utf8')) as { end?: boolean; path: string; size: number; mode: number; offset: number };
          pending = pending.subarray(nl + 1);
          if (h.end) {
            if (pending.length > 0) throw new Error('bytes after the end of the transfer');
            return { complete: true, resume: { done } };
          }
          header = h;
          startFile(h);
          continue;
        }
        if (left > 0) {
          if (pending.length === 0) break;
          const part = pending.subarray(0, Math.min(left, pending.length));
          // Synchronous writes: a ~64 KiB chunk goes to the page cache in microseconds, far cheaper
          // than a thread-pool round trip per chunk (the loop still yields between socket reads).
          writeSync(fd, part, 0, part.length, position);
          hash.update(part);
          position += part.length;
          left -= part.length;
          written += part.length;
          progress?.(written);
          pending = pending.subarray(part.length);
          continue;
        }
        if (pending.length < 65) break;
        const digest = pending.subarray(0, 64).toString('ascii');
        pending = pending.subarray(65);
        const mine = hash.digest('hex');
        closeSync(fd);
        fd = -1;
        if (digest !== mine) throw new Error(`${header.path} arrived damaged (sha256 ${mine}, sent ${digest})`);
        done.push(header.path);
        header = undefined;
      }
    }
  } catch (e) {
    if ((e as Error).message.includes('arrived damaged') || (e as Error).message.startsWith('unsafe path') || (e as Error).message.includes('not where it stopped')) throw e;
    // A broken connection: fall through to resume.
  } finally {
    if (fd >= 0) {
      try { fsyncSync(fd); } catch { /* best effort */ }
      closeSync(fd);
      fd = -1;
    }
  }
  return { complete: false, resume: resumePoint() };
}

/** Options of fetchFiles. */
export interface FetchOptions {
  /** Bytes per second the sender may use (0 = unlimited). */
  readonly bytesPerSec?: number;
  /** Only this subdirectory of the sender's files (e.g. one pre-copy round). */
  readonly subdir?: string;
  /** Ends the transfer (the files so far stay; the caller removes them). */
  readonly signal?: AbortSignal;
  /** Attempts after a broken stream (default 5). */
  readonly retries?: number;
  /** The sender holds the request until the files exist (pre-copy's final delta, asked for ahead). */
  readonly waitFinal?: boolean;
  readonly progress?: ProgressFn;
}

/**
 * Fetches every file of `url` (a sendFiles endpoint) into `dir`, resuming after broken streams.
 * `token` authenticates this agent to the other (agents of one cluster share it).
 */
export async function fetchFiles(url: string, token: string, dir: string, o: FetchOptions = {}): Promise<{ bytes: number; resumes: number }> {
  let resume: ResumePoint = { done: [] };
  let bytes = 0;
  for (let attempt = 0; ; attempt++) {
    o.signal?.throwIfAborted();
    const res = await post(url, token, { resume, bytesPerSec: o.bytesPerSec ?? 0, ...(o.subdir ? { subdir: o.subdir } : {}), ...(o.waitFinal ? { waitFinal: true } : {}) }, o.signal);
    let before = 0;
    const r = await receiveFiles(res, dir, resume, (n) => { o.progress?.(bytes + n); before = n; });
    bytes += before;
    if (r.complete) return { bytes, resumes: attempt };
    o.signal?.throwIfAborted();
    if (attempt >= (o.retries ?? 5)) throw new Error(`the transfer from ${url} broke ${attempt + 1} times; giving up`);
    resume = r.resume;
    await sleep(Math.min(2000, 100 * 2 ** attempt));
  }
}

/** POSTs JSON and resolves with the response stream (rejects on HTTP errors with the body's message). */
function post(url: string, token: string, body: unknown, signal?: AbortSignal): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = request(url, { method: 'POST', ...(signal ? { signal } : {}), headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (res) => {
      if ((res.statusCode ?? 500) >= 400) {
        let text = '';
        res.on('data', (c: Buffer) => { text += c.toString(); });
        res.on('end', () => reject(new Error(`${url}: HTTP ${res.statusCode}: ${text.slice(0, 300)}`)));
        return;
      }
      resolve(res);
    });
    req.on('error', reject);
    req.end(data);
  });
}
