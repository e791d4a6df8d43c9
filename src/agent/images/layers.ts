/**
 * Unpacked layers, once per diff id: `layers/<hex>/rootfs` (the tree overlayfs uses as a lower dir)
 * and `layers/<hex>/meta.json` (whiteouts, opaque dirs, whether overlay markers exist). A layer is
 * unpacked in tmp/ and published by renaming the whole `<hex>` directory, so a half-unpacked layer is
 * never visible.
 */
import { existsSync, readFileSync } from 'node:fs';
import { chown, mkdir, readdir, rename, rm} from 'node:fs/promises';
import { join } from 'node:path';
import { openDecompressed } from './archive.ts';
import { imageErrors } from './errors.ts';
import { writeFileAtomic, type Layout } from './layout.ts';
import { hexOf, isDigest } from './oci.ts';
import type { IdShift } from './types.ts';
import { unpackLayer } from './unpack.ts';

/** What is known about an unpacked layer. */
export interface LayerMeta {
  readonly diffId: string;
  /** Blob it was unpacked from. */
  readonly blob: string;
  readonly whiteouts: string[];
  readonly opaque: string[];
  /** True when overlay whiteout devices / opaque xattrs were written (overlayfs can use the layer). */
  readonly markers: boolean;
  readonly skipped: number;
}

/** The unpacked-layer cache. */
export class LayerCache {
  private readonly inflight = new Map<string, Promise<LayerMeta>>();

  constructor(
    private readonly layout: Layout,
    private readonly idShift: IdShift,
    private readonly log: (msg: string) => void,
  ) {}

  /** Directory holding the layer's files. */
  rootfs(diffId: string): string {
    return join(this.layout.layersDir, hexOf(diffId), 'rootfs');
  }

  /** The layer's metadata when it is unpacked. */
  meta(diffId: string): Promise<LayerMeta | undefined> {
    // Synchronous: read on every container start, a few hundred bytes (see ../small-files.ts).
    try {
      return Promise.resolve(JSON.parse(readFileSync(join(this.layout.layersDir, hexOf(diffId), 'meta.json'), 'utf8')) as LayerMeta);
    } catch {
      return Promise.resolve(undefined);
    }
  }

  /** Unpacks the layer from its blob unless it already is; concurrent callers share one unpack. */
  ensure(diffId: string, blobDigest: string, source: string): Promise<LayerMeta> {
    const running = this.inflight.get(diffId);
    if (running) return running;
    const p = this.unpack(diffId, blobDigest, source).finally(() => this.inflight.delete(diffId));
    this.inflight.set(diffId, p);
    return p;
  }

  private async unpack(diffId: string, blobDigest: string, source: string): Promise<LayerMeta> {
    const existing = await this.meta(diffId);
    if (existing) return existing;
    const final = join(this.layout.layersDir, hexOf(diffId));
    await rm(final, { recursive: true, force: true }); // a directory without meta.json is debris
    const tmp = this.layout.tempPath('layer');
    const label = `${source} (layer ${blobDigest})`;
    try {
      await mkdir(join(tmp, 'rootfs'), { recursive: true, mode: 0o755 });
      await chown(join(tmp, 'rootfs'), this.idShift.hostId, this.idShift.hostId);
      const { stream } = await openDecompressed(this.layout.blobPath(blobDigest), label);
      const r = await unpackLayer({ stream, source: label, target: join(tmp, 'rootfs'), idShift: this.idShift, log: this.log });
      if (r.diffId !== diffId) throw imageErrors.IMAGE_BAD_ARCHIVE({ source, reason: `digest mismatch: layer ${blobDigest} unpacks to ${r.diffId}, the config says ${diffId}` });
      const meta: LayerMeta = { diffId, blob: blobDigest, whiteouts: r.whiteouts, opaque: r.opaque, markers: r.markers, skipped: r.skipped };
      await writeFileAtomic(join(tmp, 'meta.json'), `${JSON.stringify(meta)}\n`);
      try {
        await rename(tmp, final);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
        const other = await this.meta(diffId); // another process won the race
        if (!other) throw e;
        return other;
      }
      return meta;
    } finally {
      await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  /** Diff ids of every unpacked layer on disk. */
  async list(): Promise<string[]> {
    const names = await readdir(this.layout.layersDir).catch(() => [] as string[]);
    return names.map((n) => `sha256:${n}`).filter(isDigest);
  }

  /** Deletes an unpacked layer. */
  async remove(diffId: string): Promise<void> {
    const dir = join(this.layout.layersDir, hexOf(diffId));
    // Rename first so a reader never sees a half-deleted tree.
    const trash = this.layout.tempPath('trash');
    try {
      await rename(dir, trash);
    } catch {
      return;
    }
    await rm(trash, { recursive: true, force: true });
  }

  /** True when the unpacked layer exists. */
  has(diffId: string): Promise<boolean> {
    return Promise.resolve(existsSync(join(this.layout.layersDir, hexOf(diffId), 'meta.json')));
  }
}
