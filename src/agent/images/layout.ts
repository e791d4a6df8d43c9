/**
 * The on-disk OCI image layout under the store root: `oci-layout`, `index.json`, `blobs/sha256/<hex>`,
 * plus Ferry's own `layers/` (unpacked layers), `mounts/` (which container uses which image) and
 * `tmp/` (work files on the same filesystem, so a finished file is published by one rename).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { mkdir, open, readFile, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { imageErrors } from './errors.ts';
import { IndexLock } from './lock.ts';
import { hexOf, isDigest, parseIndex, type OciIndex } from './oci.ts';

/** Writes a file by temp file + fsync + rename so readers see the old or the new content, never half. */
export async function writeFileAtomic(path: string, data: string | Buffer, mode = 0o644): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const fh = await open(tmp, 'wx', mode);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}

/** True when a process with this pid exists. */
function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** A pass-through that hashes and counts what flows through it. */
export class HashTap extends Transform {
  private readonly hash = createHash('sha256');
  /** Bytes seen so far. */
  bytes = 0;

  constructor(private readonly onBytes?: (n: number) => void) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null, data?: Buffer) => void): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.onBytes?.(chunk.length);
    cb(null, chunk);
  }

  /** The digest of everything seen (call once, after the stream ended). */
  digest(): string {
    return `sha256:${this.hash.digest('hex')}`;
  }
}

/** Digests an operation in progress has written but not yet referenced from index.json. */
export interface PinSession {
  add(key: string): void;
  close(): void;
}

/** The content-addressed part of the store and its index. */
export class Layout {
  readonly blobsDir: string;
  readonly layersDir: string;
  readonly mountsDir: string;
  readonly tmpDir: string;
  readonly indexFile: string;
  private readonly lock: IndexLock;
  private readonly sessions = new Set<Set<string>>();
  private readonly activeFile: string;

  constructor(readonly root: string) {
    this.blobsDir = join(root, 'blobs', 'sha256');
    this.layersDir = join(root, 'layers');
    this.mountsDir = join(root, 'mounts');
    this.tmpDir = join(root, 'tmp');
    this.indexFile = join(root, 'index.json');
    this.lock = new IndexLock(join(root, 'index.json.lock'));
    this.activeFile = join(this.tmpDir, `active-${process.pid}`);
  }

  /** Creates the layout when missing and sweeps work files a crashed run left behind. */
  async init(): Promise<void> {
    for (const d of [this.blobsDir, this.layersDir, this.mountsDir, this.tmpDir]) await mkdir(d, { recursive: true, mode: 0o700 });
    await writeFileAtomic(join(this.root, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}\n');
    try {
      await stat(this.indexFile);
    } catch {
      await this.lock.run(async () => {
        await stat(this.indexFile).catch(() => writeFileAtomic(this.indexFile, `${JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] }, null, 2)}\n`));
      });
    }
    const hourAgo = Date.now() - 3600_000;
    for (const name of await readdir(this.tmpDir)) {
      if (name.startsWith('active-')) continue; // see othersBusy
      const p = join(this.tmpDir, name);
      const st = await stat(p).catch(() => undefined);
      if (st && st.mtimeMs < hourAgo) await rm(p, { recursive: true, force: true });
    }
  }

  /** Path of a blob by digest. */
  blobPath(digest: string): string {
    return join(this.blobsDir, hexOf(digest));
  }

  /** True when the blob is present. */
  async hasBlob(digest: string): Promise<boolean> {
    return stat(this.blobPath(digest)).then(
      (s) => s.isFile(),
      () => false,
    );
  }

  /** A fresh path under tmp/ (not created). */
  tempPath(prefix: string): string {
    return join(this.tmpDir, `${prefix}-${process.pid}-${randomBytes(6).toString('hex')}`);
  }

  /** Stores bytes as a blob; checks them against `expected` when given. */
  async putBlob(data: Buffer, source: string, pins: PinSession, expected?: { digest: string; size?: number }): Promise<{ digest: string; size: number }> {
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    this.check(source, digest, data.length, expected);
    pins.add(digest);
    if (!(await this.hasBlob(digest))) await writeFileAtomic(this.blobPath(digest), data, 0o644);
    return { digest, size: data.length };
  }

  /** Streams a blob into the store, hashing on the way; checks it against `expected` when given. */
  async putBlobStream(
    src: Readable,
    source: string,
    pins: PinSession,
    expected?: { digest?: string; size?: number },
    onBytes?: (n: number) => void,
  ): Promise<{ digest: string; size: number }> {
    const tmp = this.tempPath('blob');
    const tap = new HashTap(onBytes);
    try {
      await pipeline(src, tap, createWriteStream(tmp, { flags: 'wx', mode: 0o644 }));
      const digest = tap.digest();
      this.check(source, digest, tap.bytes, expected);
      pins.add(digest);
      const fh = await open(tmp, 'r');
      await fh.sync().finally(() => fh.close());
      if (await this.hasBlob(digest)) await unlink(tmp);
      else await rename(tmp, this.blobPath(digest));
      return { digest, size: tap.bytes };
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      throw e;
    }
  }

  private check(source: string, digest: string, size: number, expected?: { digest?: string; size?: number }): void {
    if (expected?.digest !== undefined && expected.digest !== digest) {
      throw imageErrors.IMAGE_BAD_ARCHIVE({ source, reason: `digest mismatch: blob ${expected.digest} hashes to ${digest}` });
    }
    if (expected?.size !== undefined && expected.size !== size) {
      throw imageErrors.IMAGE_BAD_ARCHIVE({ source, reason: `size mismatch: blob ${digest} is ${size} bytes, descriptor says ${expected.size}` });
    }
  }

  /** Reads a whole blob (for small JSON blobs). */
  async readBlob(digest: string): Promise<Buffer> {
    if (!isDigest(digest)) throw imageErrors.IMAGE_BAD_REF({ ref: digest, reason: 'not a sha256 digest' });
    return readFile(this.blobPath(digest));
  }

  /** The current index.json. */
  readIndex(): Promise<OciIndex> {
    // Synchronous: a few hundred bytes read on every container start (see ../small-files.ts).
    try {
      return Promise.resolve(parseIndex(this.root, 'index.json', readFileSync(this.indexFile)));
    } catch (e) {
      return Promise.reject(e as Error);
    }
  }

  /** Read-modify-write of index.json under the lock; `fn` returns the new index (or undefined to keep it). */
  async updateIndex<T>(fn: (index: OciIndex) => Promise<{ index?: OciIndex; result: T }>): Promise<T> {
    return this.lock.run(async () => {
      const out = await fn(await this.readIndex());
      if (out.index) await writeFileAtomic(this.indexFile, `${JSON.stringify(out.index, null, 2)}\n`);
      return out.result;
    });
  }

  /** Runs `fn` under the index lock without changing the index (garbage collection). */
  async locked<T>(fn: () => Promise<T>): Promise<T> {
    return this.lock.run(fn);
  }

  /** Opens a set of digests (blobs or diff ids) that garbage collection leaves alone until it is closed. */
  session(): PinSession {
    const keys = new Set<string>();
    // Another process's collector cannot see our pins; this file tells it we are busy (see othersBusy).
    if (this.sessions.size === 0) writeFileSync(this.activeFile, `${process.pid}\n`);
    this.sessions.add(keys);
    return {
      add: (k) => void keys.add(k),
      close: () => {
        if (!this.sessions.delete(keys) || this.sessions.size > 0) return;
        try {
          unlinkSync(this.activeFile);
        } catch {
          // already gone
        }
      },
    };
  }

  /** True while an operation in this process holds the digest. */
  isPinned(key: string): boolean {
    for (const s of this.sessions) if (s.has(key)) return true;
    return false;
  }

  /**
   * True when another live process has an import or prepare in flight. Call it after listing the
   * blobs or layers to delete: a process creates its marker before writing anything, so whatever the
   * listing saw from it is covered.
   */
  async othersBusy(): Promise<boolean> {
    for (const name of await readdir(this.tmpDir)) {
      const m = /^active-(\d+)$/.exec(name);
      if (!m || Number(m[1]) === process.pid) continue;
      if (pidAlive(Number(m[1]))) return true;
      await unlink(join(this.tmpDir, name)).catch(() => undefined);
    }
    return false;
  }
}
