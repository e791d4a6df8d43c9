/**
 * Container root filesystems: an overlay of the image's unpacked layers with a private upper dir, or
 * a flattened private copy where overlayfs does not work. Each prepared rootfs is recorded in
 * `mounts/<containerId>.json` so the store knows which images are in use and can finish or undo a
 * preparation a crash interrupted.
 */
import { chmodSync, chownSync, mkdirSync } from 'node:fs';
import { mkdir, readdir, rm, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { flattenLayers } from './copy.ts';
import { imageErrors } from './errors.ts';
import type { LayerCache, LayerMeta } from './layers.ts';
import type { Layout } from './layout.ts';
import { readTextSync, writeFileAtomicSync } from '../small-files.ts';
import { mountOverlay, mountsUnder, overlayOptions, probeOverlay, unmountAll } from './mounts.ts';
import type { IdShift, ImageInfo, PreparedRootfs } from './types.ts';

/** Which kind of root filesystem to make: `auto` overlays when the kernel can. */
export type RootfsMode = 'auto' | 'overlay' | 'copy';

/** The record of one prepared root filesystem. */
export interface MountRecord {
  readonly containerId: string;
  readonly imageId: string;
  readonly dir: string;
  readonly mode: 'overlay' | 'copy';
  /** Diff ids, bottom layer first. */
  readonly layers: string[];
  /** False while being prepared: a record that stays false was interrupted. */
  readonly ready: boolean;
}

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** Throws IMAGE_BAD_CONTAINER_ID unless the id is safe as a file name. */
export function checkContainerId(containerId: string): void {
  if (typeof containerId !== 'string' || !ID_RE.test(containerId)) throw imageErrors.IMAGE_BAD_CONTAINER_ID({ containerId });
}

/** Prepares and releases container root filesystems. */
export class RootfsManager {
  private overlayOk?: Promise<boolean>;
  private readonly busy = new Map<string, Promise<unknown>>();

  constructor(
    private readonly layout: Layout,
    private readonly layers: LayerCache,
    private readonly idShift: IdShift,
    private readonly log: (msg: string) => void,
    private readonly modePref: RootfsMode,
  ) {}

  private recordPath(containerId: string): string {
    checkContainerId(containerId);
    return join(this.layout.mountsDir, `${containerId}.json`);
  }

  /** The record of a container, if any. */
  record(containerId: string): Promise<MountRecord | undefined> {
    try {
      const text = readTextSync(this.recordPath(containerId));
      return Promise.resolve(text === undefined ? undefined : JSON.parse(text) as MountRecord);
    } catch (e) {
      return Promise.reject(e as Error);
    }
  }

  /** Every record: which containers use which images and layers. */
  async records(): Promise<MountRecord[]> {
    const out: MountRecord[] = [];
    for (const f of await readdir(this.layout.mountsDir).catch(() => [] as string[])) {
      if (!f.endsWith('.json')) continue;
      const r = await this.record(f.slice(0, -5)).catch(() => undefined);
      if (r) out.push(r);
    }
    return out;
  }

  /** Whether overlayfs works here (probed once). */
  overlaySupported(): Promise<boolean> {
    this.overlayOk ??= probeOverlay(this.layout.tempPath('probe'), this.log);
    return this.overlayOk;
  }

  private paths(dir: string) {
    return { rootfs: join(dir, 'rootfs'), upper: join(dir, 'upper'), work: join(dir, 'work'), lower: join(dir, 'lower') };
  }

  /** Runs prepare/release steps of one container one at a time. */
  private serial<T>(containerId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.busy.get(containerId) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.busy.set(containerId, tail);
    void tail.then(() => {
      if (this.busy.get(containerId) === tail) this.busy.delete(containerId);
    });
    return next;
  }

  /** Makes (or re-mounts, after a reboot) the container's root filesystem under `dir`. */
  prepare(containerId: string, image: ImageInfo, diffIds: string[], metas: LayerMeta[], dirIn: string, deferMount = false): Promise<PreparedRootfs> {
    this.recordPath(containerId);
    return this.serial(containerId, () => this.prepareNow(containerId, image, diffIds, metas, dirIn, deferMount));
  }

  /** Unmounts and deletes what prepare made in `dir` and the record; safe to repeat. Returns the record it removed. */
  release(containerId: string, dirIn: string): Promise<MountRecord | undefined> {
    this.recordPath(containerId);
    return this.serial(containerId, () => this.releaseNow(containerId, dirIn));
  }

  private async prepareNow(
    containerId: string, image: ImageInfo, diffIds: string[], metas: LayerMeta[], dirIn: string, deferMount: boolean,
  ): Promise<PreparedRootfs> {
    const dir = resolve(dirIn);
    const p = this.paths(dir);
    const fail = (reason: string, cause?: unknown) => imageErrors.IMAGE_ROOTFS_FAILED({ containerId, dir, reason }, cause);
    const rec = await this.record(containerId);
    if (rec?.ready) {
      if (rec.imageId !== image.id || rec.dir !== dir) throw fail(`it already has a root filesystem from ${rec.imageId} in ${rec.dir}; release it first`);
      if (rec.mode === 'overlay' && !(await mountsUnder(p.rootfs)).includes(p.rootfs)) {
        const mount = await this.mount(diffIds, p, deferMount).catch((e: unknown) => {
          throw fail(`re-mounting the overlay: ${(e as Error).message}`, e);
        });
        if (mount) return { path: p.rootfs, mode: rec.mode, image, mount };
      }
      return { path: p.rootfs, mode: rec.mode, image };
    }
    if (rec) await this.releaseNow(containerId, rec.dir); // an interrupted preparation: start again

    let mode: 'overlay' | 'copy' = 'copy';
    if (this.modePref !== 'copy') {
      const ok = (await this.overlaySupported()) && metas.every((m) => m.markers);
      if (ok) mode = 'overlay';
      else if (this.modePref === 'overlay') throw fail('overlayfs was required but does not work here (see the log)');
    }
    const record: MountRecord = { containerId, imageId: image.id, dir, mode, layers: diffIds, ready: false };
    writeFileAtomicSync(this.recordPath(containerId), `${JSON.stringify(record)}\n`);
    let mount: PreparedRootfs['mount'];
    try {
      await mkdir(dir, { recursive: true, mode: 0o755 });
      if (mode === 'overlay') {
        mount = await this.mount(diffIds, p, deferMount);
      } else {
        await rm(p.rootfs, { recursive: true, force: true });
        this.ownedDir(p.rootfs);
        const layers = metas.map((m, i) => ({ root: this.layers.rootfs(diffIds[i]!), whiteouts: m.whiteouts, opaque: m.opaque }));
        await flattenLayers(layers, p.rootfs);
      }
      writeFileAtomicSync(this.recordPath(containerId), `${JSON.stringify({ ...record, ready: true })}\n`);
    } catch (e) {
      await this.releaseNow(containerId, dir).catch((e2: unknown) => this.log(`images: cleanup after failed prepare of ${containerId}: ${(e2 as Error).message}`));
      throw fail((e as Error).message, e);
    }
    return { path: p.rootfs, mode, image, ...(mount ? { mount } : {}) };
  }

  /** A directory owned by the user namespace's root, mode 0755 (synchronous: see ../small-files.ts). */
  private ownedDir(path: string): void {
    mkdirSync(path, { recursive: true, mode: 0o755 });
    chownSync(path, this.idShift.hostId, this.idShift.hostId);
    chmodSync(path, 0o755);
  }

  private async mount(diffIds: string[], p: ReturnType<RootfsManager['paths']>, defer: boolean): Promise<PreparedRootfs['mount']> {
    // Synchronous: three small directories on every container start (see ../small-files.ts).
    this.ownedDir(p.upper);
    mkdirSync(p.work, { recursive: true, mode: 0o700 });
    mkdirSync(p.rootfs, { recursive: true, mode: 0o755 });
    const lowers = diffIds.map((d) => this.layers.rootfs(d)).reverse(); // overlayfs wants the top layer first
    if (defer) return overlayOptions(lowers, p.upper, p.work, p.rootfs, p.lower);
    await mountOverlay(lowers, p.upper, p.work, p.rootfs, p.lower);
    return undefined;
  }

  private async releaseNow(containerId: string, dirIn: string): Promise<MountRecord | undefined> {
    const rec = await this.record(containerId);
    const dirs = new Set([resolve(dirIn)]);
    if (rec) dirs.add(rec.dir);
    for (const dir of dirs) {
      const p = this.paths(dir);
      try {
        for (const path of [p.rootfs, p.upper, p.work, p.lower]) await unmountAll(path);
      } catch (e) {
        throw imageErrors.IMAGE_ROOTFS_FAILED({ containerId, dir, reason: `cannot unmount: ${(e as Error).message}` }, e);
      }
      for (const path of [p.rootfs, p.upper, p.work, p.lower]) await rm(path, { recursive: true, force: true });
    }
    await unlink(this.recordPath(containerId)).catch(() => undefined);
    return rec;
  }
}
