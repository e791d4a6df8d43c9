/**
 * Unpacks one layer tar into a directory: files, dirs, symlinks, hard links, modes (setuid included),
 * mtimes and shifted ownership; device nodes and fifos are skipped. Nothing is ever written through a
 * symlink: every parent of an entry is checked with lstat to be a real directory inside the layer.
 * OCI whiteouts become overlay markers (see markers.ts) and are also listed for the copy fallback.
 *
 * Ids at or above the shift's size are mapped to the container's `nobody` (65534) — what the kernel
 * shows for unmapped ids — when that id is inside the range; otherwise the layer is refused.
 */
import { constants } from 'node:fs';
import { link, lstat, lutimes, lchown, mkdir, open, rm, symlink, unlink, chmod, chown } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { imageErrors } from './errors.ts';
import { drain, entryPath, forEachEntry, type EntryHeader } from './archive.ts';
import { HashTap } from './layout.ts';
import { writeOverlayMarkers } from './markers.ts';
import type { IdShift } from './types.ts';

/** What unpacking found besides files: whiteouts and opaque dirs (relative paths), skipped entries. */
export interface UnpackResult {
  /** sha256 of the uncompressed tar, `sha256:…`. */
  readonly diffId: string;
  readonly whiteouts: string[];
  readonly opaque: string[];
  /** True when whiteout devices and opaque xattrs were written, so overlayfs can use the layer. */
  readonly markers: boolean;
  readonly skipped: number;
}

/** Inputs of one unpack. */
export interface UnpackOptions {
  /** The uncompressed tar stream. */
  readonly stream: Readable;
  /** Names the layer in errors and logs. */
  readonly source: string;
  /** An existing, empty, real (symlink-free) directory. */
  readonly target: string;
  readonly idShift: IdShift;
  readonly log: (msg: string) => void;
}

const NOBODY = 65534;
const WH_PREFIX = '.wh.';
const WH_OPAQUE = '.wh..wh..opq';

/** Unpacks a layer; see the file comment for the rules. */
export async function unpackLayer(o: UnpackOptions): Promise<UnpackResult> {
  const u = new Unpacker(o);
  const tap = new HashTap();
  o.stream.on('error', (e) => tap.destroy(e));
  await forEachEntry(o.stream.pipe(tap), o.source, (h, entry) => u.entry(h, entry));
  return u.finish(tap.digest());
}

class Unpacker {
  private readonly dirs = new Set<string>(['']);
  private readonly dirTimes = new Map<string, Date>();
  private readonly whiteouts = new Set<string>();
  private readonly opaque = new Set<string>();
  private skipped = 0;
  private overflow = 0;

  constructor(private readonly o: UnpackOptions) {}

  private bad(reason: string) {
    return imageErrors.IMAGE_BAD_ARCHIVE({ source: this.o.source, reason });
  }

  private abs(rel: string): string {
    return rel ? join(this.o.target, rel) : this.o.target;
  }

  private shift(id: number, what: string, rel: string): number {
    const { hostId, size } = this.o.idShift;
    if (!Number.isInteger(id) || id < 0) throw this.bad(`entry ${rel} has a bad ${what} ${id}`);
    if (id < size) return hostId + id;
    if (NOBODY < size) {
      this.overflow++;
      return hostId + NOBODY;
    }
    throw this.bad(`entry ${rel} has ${what} ${id}, outside the ${size} ids the user namespace maps`);
  }

  /** Makes sure every parent of `rel` is a real directory, creating missing ones (when `create`). */
  private async parents(rel: string, create: boolean): Promise<void> {
    const parts = rel.split('/');
    let cur = '';
    for (let i = 0; i < parts.length - 1; i++) {
      cur = cur ? `${cur}/${parts[i]}` : parts[i]!;
      if (this.dirs.has(cur)) continue;
      const st = await lstat(this.abs(cur)).catch(() => undefined);
      if (!st) {
        if (!create) throw this.bad(`entry ${rel}: parent ${cur} does not exist`);
        await mkdir(this.abs(cur), 0o755);
        await lchown(this.abs(cur), this.o.idShift.hostId, this.o.idShift.hostId);
        this.created(cur, true);
      } else if (st.isSymbolicLink()) {
        throw this.bad(`entry ${rel} would be written through the symlink ${cur}`);
      } else if (!st.isDirectory()) {
        throw this.bad(`entry ${rel} is under ${cur}, which is not a directory`);
      }
      this.dirs.add(cur);
    }
  }

  /** Bookkeeping when something now exists at rel: a pending whiteout there turns into an opaque dir. */
  private created(rel: string, isDir: boolean): void {
    if (this.whiteouts.delete(rel) && isDir) this.opaque.add(rel);
  }

  /** Removes whatever is at rel (so a new non-directory, or a directory replacing a non-directory, can go there). */
  private async clear(rel: string): Promise<void> {
    const st = await lstat(this.abs(rel)).catch(() => undefined);
    if (!st) return;
    if (st.isDirectory()) {
      await rm(this.abs(rel), { recursive: true, force: true });
      const under = (p: string) => p === rel || p.startsWith(`${rel}/`);
      for (const set of [this.dirs, this.whiteouts, this.opaque]) for (const p of [...set]) if (under(p)) set.delete(p);
      for (const p of [...this.dirTimes.keys()]) if (under(p)) this.dirTimes.delete(p);
    } else {
      await unlink(this.abs(rel));
    }
  }

  async entry(h: EntryHeader, entry: Readable): Promise<void> {
    const rel = entryPath(h.name, this.o.source);
    const base = rel.slice(rel.lastIndexOf('/') + 1);
    const type = h.type ?? 'unknown'; // tar-stream gives null for typeflags it does not know (e.g. GNU sparse)
    if (base.startsWith(WH_PREFIX)) {
      await drain(entry);
      return this.whiteout(rel, base);
    }
    const pax = h.pax ?? {};
    const uid = this.shift(pax.uid !== undefined ? Number(pax.uid) : (h.uid ?? 0), 'uid', rel);
    const gid = this.shift(pax.gid !== undefined ? Number(pax.gid) : (h.gid ?? 0), 'gid', rel);
    const mtime = pax.mtime !== undefined && Number.isFinite(Number(pax.mtime)) ? new Date(Number(pax.mtime) * 1000) : (h.mtime ?? new Date(0));
    const mode = (h.mode ?? (type === 'directory' ? 0o755 : 0o644)) & 0o7777;
    if (rel === '') {
      await drain(entry);
      if (type !== 'directory') throw this.bad(`the root entry ${JSON.stringify(h.name)} is not a directory`);
      await chown(this.o.target, uid, gid);
      await chmod(this.o.target, mode);
      this.dirTimes.set('', mtime);
      return;
    }
    switch (type) {
      case 'directory':
        await drain(entry);
        await this.parents(rel, true);
        {
          const st = await lstat(this.abs(rel)).catch(() => undefined);
          if (st && !st.isDirectory()) await this.clear(rel);
          if (!st || !st.isDirectory()) await mkdir(this.abs(rel), 0o700);
        }
        await lchown(this.abs(rel), uid, gid);
        await chmod(this.abs(rel), mode); // a verified real directory: chmod cannot follow a link here
        this.dirs.add(rel);
        this.dirTimes.set(rel, mtime);
        this.created(rel, true);
        return;
      case 'file':
      case 'contiguous-file':
        await this.parents(rel, true);
        await this.clear(rel);
        await this.writeFile(rel, entry, uid, gid, mode, mtime);
        this.created(rel, false);
        return;
      case 'symlink':
        await drain(entry);
        if (!h.linkname) throw this.bad(`symlink ${rel} has no target`);
        await this.parents(rel, true);
        await this.clear(rel);
        await symlink(h.linkname, this.abs(rel));
        await lchown(this.abs(rel), uid, gid);
        await lutimes(this.abs(rel), mtime, mtime);
        this.created(rel, false);
        return;
      case 'link': {
        await drain(entry);
        const target = entryPath(h.linkname ?? '', this.o.source);
        if (target === '') throw this.bad(`hard link ${rel} has no target inside the layer`);
        await this.parents(target, false).catch((e: unknown) => {
          throw this.bad(`hard link ${rel} -> ${target} does not point at a file in the layer: ${(e as Error).message}`);
        });
        const st = await lstat(this.abs(target)).catch(() => undefined);
        if (!st || st.isDirectory()) throw this.bad(`hard link ${rel} -> ${target}: target missing or a directory`);
        if (target === rel) return;
        await this.parents(rel, true);
        await this.clear(rel);
        await link(this.abs(target), this.abs(rel));
        this.created(rel, false);
        return;
      }
      default:
        await drain(entry);
        this.skipped++;
        this.o.log(`images: ${this.o.source}: skipped ${type} ${rel}`);
    }
  }

  private async writeFile(rel: string, entry: Readable, uid: number, gid: number, mode: number, mtime: Date): Promise<void> {
    const fh = await open(this.abs(rel), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      for await (const chunk of entry) {
        const buf = chunk as Buffer;
        for (let off = 0; off < buf.length; ) off += (await fh.write(buf, off, buf.length - off)).bytesWritten;
      }
      await fh.chown(uid, gid);
      await fh.chmod(mode); // after chown, which clears setuid/setgid
      await fh.utimes(mtime, mtime);
    } finally {
      await fh.close();
    }
  }

  private async whiteout(rel: string, base: string): Promise<void> {
    const parent = dirname(rel) === '.' ? '' : dirname(rel);
    if (base === WH_OPAQUE) {
      if (parent !== '') await this.parents(`${parent}/${WH_OPAQUE}`, true); // the opaque dir itself, made if missing
      this.opaque.add(parent);
      return;
    }
    const name = base.slice(WH_PREFIX.length);
    if (name === '' || name.startsWith(WH_PREFIX)) {
      this.skipped++;
      this.o.log(`images: ${this.o.source}: skipped whiteout metadata ${rel}`);
      return;
    }
    const target = parent ? `${parent}/${name}` : name;
    await this.parents(target, true);
    // A whiteout hides lower layers only; content this layer itself has at that path wins.
    if (await lstat(this.abs(target)).catch(() => undefined)) return;
    this.whiteouts.add(target);
  }

  async finish(diffId: string): Promise<UnpackResult> {
    if (this.overflow > 0) this.o.log(`images: ${this.o.source}: ${this.overflow} id(s) beyond the user namespace range mapped to nobody`);
    const whiteouts = [...this.whiteouts].sort();
    const opaque = [...this.opaque].sort();
    const owner = { uid: this.o.idShift.hostId, gid: this.o.idShift.hostId };
    const markers = await writeOverlayMarkers(this.o.target, whiteouts, opaque, owner, this.o.log);
    // Directory mtimes last, deepest first, since writing children changes them.
    const dirs = [...this.dirTimes.entries()].sort((a, b) => b[0].split('/').length - a[0].split('/').length);
    for (const [rel, t] of dirs) await lutimes(this.abs(rel), t, t);
    return { diffId, whiteouts, opaque, markers, skipped: this.skipped };
  }
}
