/**
 * The node-local image store: ties the OCI layout, the importers, the unpacked-layer cache and the
 * root filesystem manager together behind the ImageStore contract.
 *
 * Tags live in index.json as `org.opencontainers.image.ref.name` = `name:tag`; an image that loses
 * its last tag to a newer import of that tag is dropped unless a container still uses it (then it
 * stays, untagged, until removed by id). Removing an image garbage-collects blobs and unpacked layers
 * that nothing references any more (no image, no container record, no operation in progress).
 */
import { readdir, stat, unlink } from 'node:fs/promises';
import { resolve } from 'node:path';
import { isFerryError } from '../../errors/index.ts';
import { imageErrors } from './errors.ts';
import { importDockerArchive, importOciArchive, importOciDir, importSingleLayer, storeRootfsTar, type ImportContext, type ImportedImage } from './import.ts';
import { LayerCache, type LayerMeta } from './layers.ts';
import { Layout, type PinSession } from './layout.ts';
import {
  ANNOTATION_REF_NAME,
  MT_LAYER_TAR,
  MT_MANIFEST,
  isDigest,
  normalizeTag,
  parseConfig,
  parseManifest,
  parseRef,
  runConfigOf,
  type Descriptor,
  type OciConfig,
  type OciIndex,
  type OciManifest,
} from './oci.ts';
import { packDirectory, storeTar } from './pack.ts';
import { RootfsManager, checkContainerId, type RootfsMode } from './rootfs.ts';
import { SAMPLE_CREATED, SAMPLE_INPUTS_LABEL, SAMPLE_TAG, fillSampleLayer, readSampleInputs, sampleRunConfig } from './sample.ts';
import { scanArchive, sourceKind } from './source.ts';
import type { IdShift, ImageInfo, ImageProgress, ImageStore, PreparedRootfs } from './types.ts';

/** Options of the local image store. */
export interface LocalImageStoreOptions {
  /** Store root (an OCI image layout plus Ferry's layers/, mounts/, tmp/). */
  readonly root: string;
  /** Ownership shift applied to unpacked files. */
  readonly idShift: IdShift;
  /** The static sample-app binary (scripts/setup builds it into build/sample-app). */
  readonly sampleAppPath: string;
  /** busybox-static; default /bin/busybox. */
  readonly busyboxPath?: string;
  readonly log?: (msg: string) => void;
  /** `auto` (default) overlays when the kernel can, `copy` always flattens, `overlay` fails without it. */
  readonly rootfsMode?: RootfsMode;
}

const REF = ANNOTATION_REF_NAME;

/** The ImageStore on local disk. */
export class LocalImageStore implements ImageStore {
  private readonly layout: Layout;
  private readonly layers: LayerCache;
  private readonly rootfs: RootfsManager;
  private readonly log: (msg: string) => void;
  private readonly images = new Map<string, { manifest: OciManifest; config: OciConfig }>();
  private initialized?: Promise<void>;
  private sampleBuild?: Promise<ImageInfo>;

  constructor(private readonly opts: LocalImageStoreOptions) {
    const { hostId, size } = opts.idShift;
    if (!Number.isInteger(hostId) || hostId < 0 || !Number.isInteger(size) || size < 1) throw new RangeError(`bad idShift ${hostId}/${size}`);
    this.log = opts.log ?? (() => undefined);
    this.layout = new Layout(resolve(opts.root));
    this.layers = new LayerCache(this.layout, opts.idShift, this.log);
    this.rootfs = new RootfsManager(this.layout, this.layers, opts.idShift, this.log, opts.rootfsMode ?? 'auto');
  }

  private init(): Promise<void> {
    this.initialized ??= this.layout.init().catch((e: unknown) => {
      this.initialized = undefined;
      throw e;
    });
    return this.initialized;
  }

  async import(source: string, options: { name?: string; onProgress?: (p: ImageProgress) => void } = {}): Promise<ImageInfo> {
    await this.init();
    const src = resolve(source);
    const name = options.name === undefined ? undefined : normalizeTag(options.name);
    const report = progressReporter(options.onProgress);
    const pins = this.layout.session();
    let total = 0;
    let done = 0;
    const ctx: ImportContext = {
      layout: this.layout,
      pins,
      source: src,
      name,
      onBytes: (n) => report('copy', (done += n), total),
      onTotal: (n) => void (total = n),
    };
    const needName = (kind: string) => {
      if (name === undefined) throw imageErrors.IMAGE_NAME_REQUIRED({ source: src, kind });
      return name;
    };
    try {
      const kind = await sourceKind(src);
      let img: ImportedImage;
      if (kind === 'dir-oci') {
        img = await importOciDir(ctx);
      } else if (kind === 'dir-rootfs') {
        needName('rootfs directory');
        const blob = await storeTar(this.layout, pins, src, (pack) => packDirectory(pack, src, this.log));
        img = await importSingleLayer(ctx, { ...blob, diffId: blob.digest, mediaType: MT_LAYER_TAR });
      } else {
        total = (await stat(src)).size;
        let scanned = 0;
        const scan = await scanArchive(src, (n) => report('scan', (scanned += n), total));
        if (scan.kind === 'oci-archive') img = await importOciArchive(ctx, scan);
        else if (scan.kind === 'docker-archive') img = await importDockerArchive(ctx, scan);
        else {
          needName('rootfs tar');
          img = await importSingleLayer(ctx, await storeRootfsTar(ctx, scan));
        }
      }
      await this.unpackAll(img.manifest, img.config, pins, src, (i, n) => report('unpack', i, n, true));
      await this.addToIndex(img);
      report('done', 1, 1, true);
      return await this.inspect(img.manifestDigest);
    } catch (e) {
      pins.close();
      await this.gc().catch((e2: unknown) => this.log(`images: cleanup after failed import of ${src}: ${(e2 as Error).message}`));
      throw e;
    } finally {
      pins.close();
    }
  }

  private async unpackAll(manifest: OciManifest, config: OciConfig, pins: PinSession, source: string, step?: (i: number, n: number) => void): Promise<LayerMeta[]> {
    const metas: LayerMeta[] = [];
    const n = manifest.layers.length;
    for (let i = 0; i < n; i++) {
      step?.(i, n);
      const diffId = config.rootfs.diff_ids[i]!;
      pins.add(diffId);
      if (!(await this.layers.has(diffId)) && !(await this.layout.hasBlob(manifest.layers[i]!.digest))) {
        throw imageErrors.IMAGE_BAD_ARCHIVE({ source, reason: `missing blob ${manifest.layers[i]!.digest} (layer ${i})` });
      }
      metas.push(await this.layers.ensure(diffId, manifest.layers[i]!.digest, source));
    }
    step?.(n, n);
    return metas;
  }

  /** Points the import's tags at it (moving them from older images) or lists it untagged. */
  private async addToIndex(img: ImportedImage): Promise<void> {
    const inUse = new Set((await this.rootfs.records()).map((r) => r.imageId));
    await this.layout.updateIndex(async (index) => {
      const tags = new Set(img.tags);
      const mediaType = img.manifest.mediaType ?? MT_MANIFEST;
      const base = { mediaType, digest: img.manifestDigest, size: img.manifestSize };
      let manifests = index.manifests.filter((d) => !(d.annotations?.[REF] !== undefined && tags.has(d.annotations[REF])));
      // Images whose last tag moved away: kept (untagged) only while a container uses them.
      for (const d of index.manifests) {
        if (d.digest === img.manifestDigest || manifests.some((m) => m.digest === d.digest)) continue;
        if (inUse.has(d.digest)) manifests.push({ mediaType: d.mediaType, digest: d.digest, size: d.size });
      }
      if (tags.size > 0) manifests = manifests.filter((d) => !(d.digest === img.manifestDigest && d.annotations?.[REF] === undefined));
      for (const t of [...tags].sort()) manifests.push({ ...base, annotations: { [REF]: t } });
      if (!manifests.some((d) => d.digest === img.manifestDigest)) manifests.push(base);
      return { index: { ...index, manifests }, result: undefined };
    });
    await this.gc();
  }

  private async load(digest: string): Promise<{ manifest: OciManifest; config: OciConfig }> {
    const hit = this.images.get(digest);
    if (hit) return hit;
    const manifest = parseManifest(this.layout.root, `manifest ${digest}`, await this.layout.readBlob(digest));
    const config = parseConfig(this.layout.root, `config ${manifest.config.digest}`, await this.layout.readBlob(manifest.config.digest));
    const v = { manifest, config };
    this.images.set(digest, v);
    return v;
  }

  private async info(index: OciIndex, digest: string): Promise<ImageInfo> {
    const { manifest, config } = await this.load(digest);
    const tags = index.manifests.filter((d) => d.digest === digest && d.annotations?.[REF] !== undefined).map((d) => d.annotations![REF]!);
    return {
      id: digest,
      tags: [...new Set(tags)].sort(),
      size: manifest.layers.reduce((s, l) => s + l.size, 0),
      layers: manifest.layers.map((l) => l.digest),
      created: config.created ?? '',
      architecture: config.architecture,
      os: config.os,
      config: runConfigOf(config),
    };
  }

  async list(): Promise<ImageInfo[]> {
    await this.init();
    const index = await this.layout.readIndex();
    const out: ImageInfo[] = [];
    for (const digest of new Set(index.manifests.map((d) => d.digest))) out.push(await this.info(index, digest));
    return out.sort((a, b) => (a.created === b.created ? a.id.localeCompare(b.id) : a.created < b.created ? 1 : -1));
  }

  async inspect(ref: string): Promise<ImageInfo> {
    await this.init();
    const index = await this.layout.readIndex();
    return this.info(index, resolveRef(index, ref).digest);
  }

  async remove(ref: string, options: { force?: boolean } = {}): Promise<void> {
    await this.init();
    await this.layout.updateIndex(async (index) => {
      const hit = resolveRef(index, ref);
      const manifests = hit.tag
        ? index.manifests.filter((d) => !(d.digest === hit.digest && d.annotations?.[REF] === hit.tag))
        : index.manifests.filter((d) => d.digest !== hit.digest);
      if (!manifests.some((d) => d.digest === hit.digest) && !options.force) {
        const users = (await this.rootfs.records()).filter((r) => r.imageId === hit.digest).map((r) => r.containerId);
        if (users.length > 0) throw imageErrors.IMAGE_IN_USE({ ref, containers: users.join(', ') });
      }
      return { index: { ...index, manifests }, result: undefined };
    });
    await this.gc();
  }

  async warmUp(): Promise<void> {
    await this.init();
    await this.rootfs.overlaySupported();
  }

  ensureSample(): Promise<ImageInfo> {
    this.sampleBuild ??= this.buildSample().finally(() => {
      this.sampleBuild = undefined;
    });
    return this.sampleBuild;
  }

  private async buildSample(): Promise<ImageInfo> {
    await this.init();
    const inputs = await readSampleInputs(this.opts.busyboxPath ?? '/bin/busybox', this.opts.sampleAppPath);
    const current = await this.inspect(SAMPLE_TAG).catch((e: unknown) => {
      if (isFerryError(e, 'IMAGE_NOT_FOUND')) return undefined;
      throw e;
    });
    if (current?.config.labels[SAMPLE_INPUTS_LABEL] === inputs.digest) {
      const { manifest, config } = await this.load(current.id);
      const pins = this.layout.session();
      await this.unpackAll(manifest, config, pins, SAMPLE_TAG).finally(() => pins.close());
      return current;
    }
    const pins = this.layout.session();
    try {
      const ctx: ImportContext = { layout: this.layout, pins, source: 'ferry-sample', name: SAMPLE_TAG, onBytes: () => undefined };
      const blob = await storeTar(this.layout, pins, ctx.source, (pack) => fillSampleLayer(pack, inputs));
      const img = await importSingleLayer(ctx, { ...blob, diffId: blob.digest, mediaType: MT_LAYER_TAR }, sampleRunConfig(inputs), SAMPLE_CREATED);
      await this.unpackAll(img.manifest, img.config, pins, ctx.source);
      await this.addToIndex(img);
      return await this.inspect(img.manifestDigest);
    } finally {
      pins.close();
    }
  }

  async prepareRootfs(containerId: string, ref: string, dir: string, options: { deferMount?: boolean } = {}): Promise<PreparedRootfs> {
    checkContainerId(containerId);
    await this.init();
    const image = await this.inspect(ref);
    const { manifest, config } = await this.load(image.id);
    const pins = this.layout.session();
    try {
      const metas = await this.unpackAll(manifest, config, pins, ref);
      return await this.rootfs.prepare(containerId, image, config.rootfs.diff_ids, metas, dir, options.deferMount === true);
    } finally {
      pins.close();
    }
  }

  async releaseRootfs(containerId: string, dir: string): Promise<void> {
    checkContainerId(containerId);
    await this.init();
    const rec = await this.rootfs.release(containerId, dir);
    if (rec && !(await this.layout.readIndex()).manifests.some((d) => d.digest === rec.imageId)) await this.gc();
  }

  /** Deletes blobs and unpacked layers nothing references (no image, no container, no running operation). */
  async gc(): Promise<void> {
    await this.init();
    const records = await this.rootfs.records();
    await this.layout.locked(async () => {
      const index = await this.layout.readIndex();
      const blobs = new Set<string>();
      const diffIds = new Set<string>(records.flatMap((r) => r.layers));
      for (const digest of new Set(index.manifests.map((d) => d.digest))) {
        blobs.add(digest);
        try {
          const { manifest, config } = await this.load(digest);
          blobs.add(manifest.config.digest);
          for (const l of manifest.layers) blobs.add(l.digest);
          for (const d of config.rootfs.diff_ids) diffIds.add(d);
        } catch (e) {
          this.log(`images: gc: cannot read image ${digest}: ${(e as Error).message}`);
        }
      }
      const staleBlobs = (await readdir(this.layout.blobsDir)).map((hex) => `sha256:${hex}`).filter((d) => isDigest(d) && !blobs.has(d));
      const staleLayers = (await this.layers.list()).filter((d) => !diffIds.has(d));
      if (await this.layout.othersBusy()) return; // their new blobs are not in index.json yet; collect next time
      for (const d of staleBlobs) {
        if (this.layout.isPinned(d)) continue;
        await unlink(this.layout.blobPath(d)).catch(() => undefined);
        this.images.delete(d);
      }
      for (const d of staleLayers) if (!this.layout.isPinned(d)) await this.layers.remove(d);
    });
  }
}

/** Finds the image a reference names in an index; `tag` is set when it matched by tag. */
function resolveRef(index: OciIndex, ref: string): { digest: string; tag?: string } {
  const r = parseRef(ref);
  const all: Descriptor[] = index.manifests;
  const notFound = () => imageErrors.IMAGE_NOT_FOUND({ ref });
  const byPrefix = (hex: string) => {
    const hits = [...new Set(all.map((d) => d.digest).filter((d) => d.startsWith(`sha256:${hex}`)))];
    if (hits.length > 1) throw imageErrors.IMAGE_AMBIGUOUS({ ref, candidates: hits.join(', ') });
    return hits[0];
  };
  switch (r.kind) {
    case 'id':
    case 'digest':
      if (all.some((d) => d.digest === r.digest)) return { digest: r.digest };
      throw notFound();
    case 'prefix': {
      const d = byPrefix(r.hex);
      if (d) return { digest: d };
      throw notFound();
    }
    case 'tag': {
      const t = all.find((d) => d.annotations?.[REF] === r.full);
      if (t) return { digest: t.digest, tag: r.full };
      const d = r.prefix ? byPrefix(r.prefix) : undefined;
      if (d) return { digest: d };
      throw notFound();
    }
  }
}

/** Turns progress callbacks into at most ~10 events a second per phase (phase changes always pass). */
function progressReporter(cb?: (p: ImageProgress) => void): (phase: string, done: number, total: number, force?: boolean) => void {
  let last = 0;
  let lastPhase = '';
  return (phase, done, total, force = false) => {
    if (!cb) return;
    const now = Date.now();
    if (!force && phase === lastPhase && now - last < 100 && done < total) return;
    last = now;
    lastPhase = phase;
    try {
      cb({ phase, done, total });
    } catch {
      // a broken progress listener must not break the import
    }
  };
}
