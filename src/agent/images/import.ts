/**
 * Import of each source kind into the blob store. Every importer ends with the same result — a stored
 * manifest, its config and the tags to give it — and the store then unpacks the layers and tags it.
 */
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { readHead, sniffCompression } from './archive.ts';
import { imageErrors } from './errors.ts';
import type { Layout, PinSession } from './layout.ts';
import {
  ANNOTATION_REF_NAME,
  DEFAULT_PATH,
  MT_CONFIG,
  MT_LAYER_GZIP,
  MT_LAYER_TAR,
  MT_MANIFEST,
  digestOf,
  hexOf,
  hostArchitecture,
  isDigest,
  isIndexMediaType,
  normalizeTag,
  parseConfig,
  parseIndex,
  parseManifest,
  parseRef,
  tryNormalizeTag,
  type Descriptor,
  type OciConfig,
  type OciIndex,
  type OciManifest,
} from './oci.ts';
import { extractBlobs, resolveArchiveName, type ArchiveScan } from './source.ts';

/** A manifest and config now in the blob store, plus the tags the import asks for. */
export interface ImportedImage {
  readonly manifestDigest: string;
  readonly manifestSize: number;
  readonly manifest: OciManifest;
  readonly config: OciConfig;
  readonly tags: string[];
}

/** What every importer gets. */
export interface ImportContext {
  readonly layout: Layout;
  readonly pins: PinSession;
  readonly source: string;
  readonly name?: string;
  readonly onBytes: (n: number) => void;
  /** Tells progress how many bytes the copy will take, when the importer learns it. */
  readonly onTotal?: (bytes: number) => void;
}

/** Reads a JSON blob of the source by digest (verified). */
type JsonBlobReader = (digest: string, what: string) => Promise<Buffer>;

/** Picks the manifest descriptor of an OCI index.json that `name` asks for (or the only one). */
function pickFromIndex(index: OciIndex, source: string, name?: string): { desc: Descriptor; refName?: string } {
  const all = index.manifests;
  const refOf = (d: Descriptor) => d.annotations?.[ANNOTATION_REF_NAME];
  const digests = new Set(all.map((d) => d.digest));
  if (all.length === 0) throw imageErrors.IMAGE_BAD_ARCHIVE({ source, reason: 'index.json lists no manifests' });
  const candidates = () => all.map((d) => refOf(d) ?? d.digest).join(', ');
  if (name !== undefined) {
    const r = parseRef(name);
    const want = r.kind === 'tag' ? r.full : undefined;
    const tag = r.kind === 'tag' ? r.tag : undefined;
    const hits = all.filter((d) => {
      const ref = refOf(d);
      return ref !== undefined && (ref === name || (want !== undefined && tryNormalizeTag(ref) === want) || ref === tag);
    });
    if (new Set(hits.map((d) => d.digest)).size > 1) throw imageErrors.IMAGE_AMBIGUOUS({ ref: name, candidates: candidates() });
    if (hits[0]) return { desc: hits[0], refName: refOf(hits[0]) };
  }
  if (digests.size === 1) return { desc: all[0]!, refName: refOf(all[0]!) };
  throw imageErrors.IMAGE_AMBIGUOUS({ ref: name ?? source, candidates: candidates() });
}

/** Follows image indexes down to this host's manifest, then reads manifest and config. */
async function resolveManifest(read: JsonBlobReader, source: string, top: Descriptor): Promise<{ desc: Descriptor; bytes: Buffer; manifest: OciManifest; config: OciConfig; configBytes: Buffer }> {
  let desc = top;
  for (let depth = 0; ; depth++) {
    const bytes = await read(desc.digest, `manifest ${desc.digest}`);
    let doc: { manifests?: unknown };
    try {
      doc = JSON.parse(bytes.toString()) as { manifests?: unknown };
    } catch (e) {
      throw imageErrors.IMAGE_BAD_ARCHIVE({ source, reason: `manifest ${desc.digest} is not valid JSON` }, e);
    }
    if (!isIndexMediaType(desc.mediaType) && !Array.isArray(doc.manifests)) {
      const manifest = parseManifest(source, `manifest ${desc.digest}`, bytes);
      const configBytes = await read(manifest.config.digest, `config ${manifest.config.digest}`);
      const config = parseConfig(source, `config ${manifest.config.digest}`, configBytes);
      if (config.rootfs.diff_ids.length !== manifest.layers.length) {
        throw imageErrors.IMAGE_BAD_ARCHIVE({ source, reason: `manifest has ${manifest.layers.length} layers but the config lists ${config.rootfs.diff_ids.length} diff ids` });
      }
      return { desc, bytes, manifest, config, configBytes };
    }
    if (depth >= 3) throw imageErrors.IMAGE_BAD_ARCHIVE({ source, reason: 'image indexes nested too deep' });
    const index = parseIndex(source, `index ${desc.digest}`, bytes);
    const arch = hostArchitecture();
    const real = index.manifests.filter((d) => d.platform?.os !== 'unknown');
    const mine = real.filter((d) => d.platform?.os === 'linux' && d.platform.architecture === arch);
    const pick = mine[0] ?? (real.length === 1 ? real[0] : undefined);
    if (!pick) throw imageErrors.IMAGE_BAD_ARCHIVE({ source, reason: `the image index has no manifest for linux/${arch}` });
    desc = pick;
  }
}

/** Tags an OCI import gets: the requested name, else the layout's ref name when it is a full `name:tag`. */
function ociTags(name: string | undefined, refName: string | undefined): string[] {
  if (name !== undefined) return [normalizeTag(name)];
  if (refName && /[:/]/.test(refName)) {
    const t = tryNormalizeTag(refName);
    if (t) return [t];
  }
  return [];
}

/** Imports from an OCI layout directory. */
export async function importOciDir(ctx: ImportContext): Promise<ImportedImage> {
  const { source, layout, pins } = ctx;
  const blobFile = (digest: string) => join(source, 'blobs', 'sha256', hexOf(digest));
  const read: JsonBlobReader = async (digest, what) => {
    const st = await stat(blobFile(digest)).catch(() => undefined);
    if (!st) throw imageErrors.IMAGE_BAD_ARCHIVE({ source, reason: `missing blob ${digest} (${what})` });
    if (st.size > 8 << 20) throw imageErrors.IMAGE_BAD_ARCHIVE({ source, reason: `${what} is larger than 8 MiB` });
    const bytes = await readFile(blobFile(digest));
    await layout.putBlob(bytes, source, pins, { digest });
    return bytes;
  };
  const index = parseIndex(source, 'index.json', await readFile(join(source, 'index.json')));
  const { desc, refName } = pickFromIndex(index, source, ctx.name);
  const r = await resolveManifest(read, source, desc);
  ctx.onTotal?.(r.manifest.layers.reduce((n, l) => n + l.size, 0));
  for (const l of r.manifest.layers) {
    if (await layout.hasBlob(l.digest)) {
      ctx.onBytes(l.size);
      pins.add(l.digest);
      continue;
    }
    const st = await stat(blobFile(l.digest)).catch(() => undefined);
    if (!st) throw imageErrors.IMAGE_BAD_ARCHIVE({ source, reason: `missing blob ${l.digest} (layer)` });
    await layout.putBlobStream(createReadStream(blobFile(l.digest)), source, pins, { digest: l.digest, size: l.size }, ctx.onBytes);
  }
  return { manifestDigest: r.desc.digest, manifestSize: r.bytes.length, manifest: r.manifest, config: r.config, tags: ociTags(ctx.name, refName) };
}

/** Imports from an OCI layout tarball (`oci-archive`). */
export async function importOciArchive(ctx: ImportContext, scan: ArchiveScan): Promise<ImportedImage> {
  const { source, layout, pins } = ctx;
  const read: JsonBlobReader = async (digest, what) => {
    const name = `blobs/sha256/${hexOf(digest)}`;
    const bytes = scan.files.get(name);
    if (!bytes) {
      const why = scan.blobSizes.has(name) ? 'too large or not JSON' : 'not in the archive';
      throw imageErrors.IMAGE_BAD_ARCHIVE({ source, reason: `missing blob ${digest} (${what}: ${why})` });
    }
    await layout.putBlob(bytes, source, pins, { digest });
    return bytes;
  };
  const index = parseIndex(source, 'index.json', scan.files.get('index.json')!);
  const { desc, refName } = pickFromIndex(index, source, ctx.name);
  const r = await resolveManifest(read, source, desc);
  const wanted = new Map<string, { digest: string; size: number }>();
  for (const l of r.manifest.layers) {
    if (await layout.hasBlob(l.digest)) pins.add(l.digest);
    else wanted.set(`blobs/sha256/${hexOf(l.digest)}`, { digest: l.digest, size: l.size });
  }
  if (wanted.size > 0) await extractBlobs(source, scan.compression, wanted, layout, pins, ctx.onBytes);
  return { manifestDigest: r.desc.digest, manifestSize: r.bytes.length, manifest: r.manifest, config: r.config, tags: ociTags(ctx.name, refName) };
}

interface DockerEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

/** Imports a docker-archive tarball (`docker save`, `skopeo copy … docker-archive:`), converting it to OCI. */
export async function importDockerArchive(ctx: ImportContext, scan: ArchiveScan): Promise<ImportedImage> {
  const { source, layout, pins } = ctx;
  const bad = (reason: string) => imageErrors.IMAGE_BAD_ARCHIVE({ source, reason });
  let entries: DockerEntry[];
  try {
    entries = JSON.parse(scan.files.get('manifest.json')!.toString()) as DockerEntry[];
  } catch (e) {
    throw imageErrors.IMAGE_BAD_ARCHIVE({ source, reason: 'manifest.json is not valid JSON' }, e);
  }
  if (!Array.isArray(entries) || entries.length === 0 || !entries.every((e) => e && typeof e.Config === 'string' && Array.isArray(e.Layers) && e.Layers.every((l) => typeof l === 'string'))) {
    throw bad('manifest.json must be a list of {Config, RepoTags, Layers}');
  }
  const tagsOf = (e: DockerEntry) => (e.RepoTags ?? []).map((t) => tryNormalizeTag(t)).filter((t): t is string => t !== undefined);
  let entry: DockerEntry | undefined;
  if (ctx.name !== undefined) {
    const want = normalizeTag(ctx.name);
    entry = entries.find((e) => tagsOf(e).includes(want));
  }
  if (!entry && entries.length === 1) entry = entries[0];
  if (!entry) throw imageErrors.IMAGE_AMBIGUOUS({ ref: ctx.name ?? source, candidates: entries.map((e) => (e.RepoTags ?? [e.Config]).join(' ')).join(', ') });

  const configName = resolveArchiveName(scan, entry.Config, source);
  const configBytes = scan.files.get(configName);
  if (!configBytes) throw bad(`missing blob: config ${entry.Config} is not in the archive (or larger than 8 MiB)`);
  const named = /(?:^|\/)([0-9a-f]{64})(?:\.json)?$/.exec(configName);
  if (named && digestOf(configBytes) !== `sha256:${named[1]}`) throw bad(`digest mismatch: config ${entry.Config} hashes to ${digestOf(configBytes)}`);
  const config = parseConfig(source, `config ${entry.Config}`, configBytes);
  if (config.rootfs.diff_ids.length !== entry.Layers.length) {
    throw bad(`manifest.json lists ${entry.Layers.length} layers but the config has ${config.rootfs.diff_ids.length} diff ids`);
  }
  const layerNames = entry.Layers.map((l) => resolveArchiveName(scan, l, source));
  const wanted = new Map<string, { digest?: string }>();
  for (const n of layerNames) {
    const m = /^blobs\/sha256\/([0-9a-f]{64})$/.exec(n);
    wanted.set(n, m ? { digest: `sha256:${m[1]}` } : {});
  }
  const stored = await extractBlobs(source, scan.compression, wanted, layout, pins, ctx.onBytes);
  const layers: Descriptor[] = [];
  for (const n of layerNames) {
    const b = stored.get(n)!;
    const c = sniffCompression(await readHead(layout.blobPath(b.digest), 8));
    if (c !== 'none' && c !== 'gzip') throw bad(`unsupported compression ${c} in layer ${n} (only gzip and uncompressed tar are supported)`);
    layers.push({ mediaType: c === 'gzip' ? MT_LAYER_GZIP : MT_LAYER_TAR, digest: b.digest, size: b.size });
  }
  const cfg = await layout.putBlob(configBytes, source, pins);
  const manifest: OciManifest = { schemaVersion: 2, mediaType: MT_MANIFEST, config: { mediaType: MT_CONFIG, digest: cfg.digest, size: cfg.size }, layers };
  const m = await layout.putBlob(Buffer.from(JSON.stringify(manifest)), source, pins);
  return { manifestDigest: m.digest, manifestSize: m.size, manifest, config, tags: ctx.name !== undefined ? [normalizeTag(ctx.name)] : tagsOf(entry) };
}

/** Builds a one-layer image around an already stored layer blob (rootfs tar or directory), with a default config. */
export async function importSingleLayer(
  ctx: ImportContext,
  layer: { digest: string; size: number; diffId: string; mediaType: string },
  run?: OciConfig['config'],
  created = new Date().toISOString(),
): Promise<ImportedImage> {
  if (!isDigest(layer.diffId)) throw imageErrors.IMAGE_BAD_ARCHIVE({ source: ctx.source, reason: 'bad diff id' });
  const config: OciConfig = {
    created,
    architecture: hostArchitecture(),
    os: 'linux',
    config: run ?? { Env: [DEFAULT_PATH], Cmd: ['/bin/sh'], WorkingDir: '/' },
    rootfs: { type: 'layers', diff_ids: [layer.diffId] },
    history: [{ created, created_by: `ferry import ${ctx.source}` }],
  };
  const cfg = await ctx.layout.putBlob(Buffer.from(JSON.stringify(config)), ctx.source, ctx.pins);
  const manifest: OciManifest = {
    schemaVersion: 2,
    mediaType: MT_MANIFEST,
    config: { mediaType: MT_CONFIG, digest: cfg.digest, size: cfg.size },
    layers: [{ mediaType: layer.mediaType, digest: layer.digest, size: layer.size }],
  };
  const m = await ctx.layout.putBlob(Buffer.from(JSON.stringify(manifest)), ctx.source, ctx.pins);
  return { manifestDigest: m.digest, manifestSize: m.size, manifest, config, tags: ctx.name !== undefined ? [normalizeTag(ctx.name)] : [] };
}

/** Stores a rootfs tar file as the layer blob as it is (gzip or plain). */
export async function storeRootfsTar(ctx: ImportContext, scan: ArchiveScan): Promise<{ digest: string; size: number; diffId: string; mediaType: string }> {
  const b = await ctx.layout.putBlobStream(createReadStream(ctx.source), ctx.source, ctx.pins, { digest: scan.rawDigest }, ctx.onBytes);
  return { ...b, diffId: scan.diffId, mediaType: scan.compression === 'gzip' ? MT_LAYER_GZIP : MT_LAYER_TAR };
}
