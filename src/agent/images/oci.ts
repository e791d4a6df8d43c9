/**
 * OCI image-spec shapes (descriptor, index, manifest, config), media types and the parsing the store
 * needs: image references (`name:tag`, ids, id prefixes) and JSON checked enough to trust its fields.
 */
import { stripDockerHub } from '../../model/index.ts';
import { createHash } from 'node:crypto';
import { imageErrors } from './errors.ts';
import type { ImageRunConfig } from './types.ts';

/** Media type of an OCI image index. */
export const MT_INDEX = 'application/vnd.oci.image.index.v1+json';
/** Media type of an OCI image manifest. */
export const MT_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
/** Media type of an OCI image config. */
export const MT_CONFIG = 'application/vnd.oci.image.config.v1+json';
/** Media type of an uncompressed layer. */
export const MT_LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar';
/** Media type of a gzip layer. */
export const MT_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
/** Media type of a Docker schema 2 manifest list (read like an OCI index). */
export const MT_DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
/** Annotation on index.json descriptors that names a tag. */
export const ANNOTATION_REF_NAME = 'org.opencontainers.image.ref.name';
/** PATH every image config gets when it names none (the Docker default). */
export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** A content descriptor. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { architecture: string; os: string; variant?: string };
}

/** An image index (index.json, or a multi-platform list). */
export interface OciIndex {
  schemaVersion: number;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

/** An image manifest. */
export interface OciManifest {
  schemaVersion: number;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

/** The container-facing part of an image config (Docker's capitalised field names). */
export interface OciRunSection {
  User?: string;
  ExposedPorts?: Record<string, object>;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  WorkingDir?: string;
  Labels?: Record<string, string> | null;
  StopSignal?: string;
}

/** An image config. */
export interface OciConfig {
  created?: string;
  architecture: string;
  os: string;
  config?: OciRunSection;
  rootfs: { type: string; diff_ids: string[] };
  history?: { created?: string; created_by?: string; empty_layer?: boolean; comment?: string }[];
}

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

/** True for a well-formed `sha256:<64 hex>` digest. */
export function isDigest(s: unknown): s is string {
  return typeof s === 'string' && DIGEST_RE.test(s);
}

/** The sha256 digest of some bytes, `sha256:…`. */
export function digestOf(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** The hex part of a digest. */
export function hexOf(digest: string): string {
  return digest.slice('sha256:'.length);
}

/** The OCI architecture name of this host. */
export function hostArchitecture(): string {
  const map: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  return map[process.arch] ?? process.arch;
}

/** Parses JSON and checks the shape is at least an object; `what` names it in the error. */
function parseObject(source: string, what: string, data: Buffer | string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(data.toString());
  } catch (e) {
    throw imageErrors.IMAGE_BAD_ARCHIVE({ source, reason: `${what} is not valid JSON` }, e);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw imageErrors.IMAGE_BAD_ARCHIVE({ source, reason: `${what} is not a JSON object` });
  return v as Record<string, unknown>;
}

function checkDescriptor(source: string, what: string, d: unknown): Descriptor {
  const o = d as Descriptor | null;
  if (!o || typeof o !== 'object' || typeof o.mediaType !== 'string' || !isDigest(o.digest) || typeof o.size !== 'number' || o.size < 0) {
    throw imageErrors.IMAGE_BAD_ARCHIVE({ source, reason: `${what} has a bad descriptor (need mediaType, sha256 digest, size)` });
  }
  return o;
}

/** Parses an index.json or image index. */
export function parseIndex(source: string, what: string, data: Buffer | string): OciIndex {
  const o = parseObject(source, what, data);
  if (!Array.isArray(o.manifests)) throw imageErrors.IMAGE_BAD_ARCHIVE({ source, reason: `${what} has no manifests list` });
  o.manifests.forEach((d, i) => checkDescriptor(source, `${what} manifests[${i}]`, d));
  return o as unknown as OciIndex;
}

/** True when a descriptor or document's media type says image index / manifest list. */
export function isIndexMediaType(mt: string | undefined): boolean {
  return mt === MT_INDEX || mt === MT_DOCKER_LIST;
}

/** Parses an image manifest (OCI or Docker schema 2, which share the shape). */
export function parseManifest(source: string, what: string, data: Buffer | string): OciManifest {
  const o = parseObject(source, what, data);
  if (o.schemaVersion !== 2) throw imageErrors.IMAGE_BAD_ARCHIVE({ source, reason: `${what} is not a schema 2 manifest` });
  checkDescriptor(source, `${what} config`, o.config);
  if (!Array.isArray(o.layers)) throw imageErrors.IMAGE_BAD_ARCHIVE({ source, reason: `${what} has no layers list` });
  o.layers.forEach((d, i) => checkDescriptor(source, `${what} layers[${i}]`, d));
  return o as unknown as OciManifest;
}

/** Parses an image config and checks its rootfs diff ids. */
export function parseConfig(source: string, what: string, data: Buffer | string): OciConfig {
  const o = parseObject(source, what, data);
  const rootfs = o.rootfs as { diff_ids?: unknown } | undefined;
  if (!rootfs || !Array.isArray(rootfs.diff_ids) || !rootfs.diff_ids.every(isDigest)) {
    throw imageErrors.IMAGE_BAD_ARCHIVE({ source, reason: `${what} has no valid rootfs.diff_ids` });
  }
  if (typeof o.architecture !== 'string') o.architecture = hostArchitecture();
  if (typeof o.os !== 'string') o.os = 'linux';
  return o as unknown as OciConfig;
}

/** The run settings of a config, with the defaults a runtime would apply. */
export function runConfigOf(config: OciConfig): ImageRunConfig {
  const c = config.config ?? {};
  return {
    entrypoint: c.Entrypoint ?? [],
    cmd: c.Cmd ?? [],
    env: c.Env ?? [DEFAULT_PATH],
    workingDir: c.WorkingDir || '/',
    user: c.User ?? '',
    exposedPorts: Object.keys(c.ExposedPorts ?? {}),
    labels: c.Labels ?? {},
  };
}

/** A parsed image reference. */
export type ImageRef =
  | { kind: 'id'; digest: string }
  | { kind: 'prefix'; hex: string }
  | { kind: 'tag'; name: string; tag: string; full: string; prefix?: string }
  | { kind: 'digest'; name: string; digest: string };

const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const DOMAIN = '(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)?';
const NAME_RE = new RegExp(`^${DOMAIN}${COMPONENT}(?:/${COMPONENT})*$`);
const TAG_RE = /^[\w][\w.-]{0,127}$/;

/** Parses `name`, `name:tag`, `name@sha256:…`, `sha256:<id>`, `sha256:<prefix>` or a bare hex prefix (≥ 6). */
export function parseRef(input: string): ImageRef {
  const bad = (reason: string) => imageErrors.IMAGE_BAD_REF({ ref: input, reason });
  if (typeof input !== 'string' || input.length === 0) throw bad('empty');
  const ref = stripDockerHub(input);
  if (ref.length > 512) throw bad('too long');
  if (ref.startsWith('sha256:')) {
    const hex = ref.slice(7);
    if (/^[0-9a-f]{64}$/.test(hex)) return { kind: 'id', digest: ref };
    if (/^[0-9a-f]{6,63}$/.test(hex)) return { kind: 'prefix', hex };
    throw bad('an id is sha256: followed by 6 to 64 lowercase hex digits');
  }
  const at = ref.indexOf('@');
  if (at >= 0) {
    const name = ref.slice(0, at);
    const digest = ref.slice(at + 1);
    if (!NAME_RE.test(name)) throw bad('the name must be lowercase letters, digits and separators');
    if (!isDigest(digest)) throw bad('the digest must be sha256:<64 hex>');
    return { kind: 'digest', name, digest };
  }
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  let name = ref;
  let tag = 'latest';
  if (colon > slash) {
    name = ref.slice(0, colon);
    tag = ref.slice(colon + 1);
    if (!TAG_RE.test(tag)) throw bad('a tag is letters, digits, _ . - (at most 128, not starting with . or -)');
  }
  if (!NAME_RE.test(name)) throw bad('the name must be lowercase letters, digits and separators . _ - /');
  const out: ImageRef = { kind: 'tag', name, tag, full: `${name}:${tag}` };
  if (colon <= slash && /^[0-9a-f]{6,64}$/.test(ref)) out.prefix = ref;
  return out;
}

/** Normalises a tag reference to `name:tag` (default tag `latest`); throws IMAGE_BAD_REF otherwise. */
export function normalizeTag(ref: string): string {
  const r = parseRef(ref);
  if (r.kind !== 'tag') throw imageErrors.IMAGE_BAD_REF({ ref, reason: 'expected name or name:tag' });
  return r.full;
}

/** Like normalizeTag but returns undefined for anything that is not a valid `name[:tag]`. */
export function tryNormalizeTag(ref: string): string | undefined {
  try {
    return normalizeTag(ref);
  } catch {
    return undefined;
  }
}
