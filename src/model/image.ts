/** Image references and the per-node image reports the manager keeps at `/ferry/images/<node>`. */
import { Type, type Static } from 'typebox';

/** What an agent reports about one image it holds. */
export const ImageRecordSchema = Type.Object({
  id: Type.String(),
  tags: Type.Array(Type.String()),
  size: Type.Integer(),
  created: Type.String(),
  architecture: Type.String(),
  os: Type.String(),
  layers: Type.Array(Type.String()),
  config: Type.Object({
    entrypoint: Type.Array(Type.String()),
    cmd: Type.Array(Type.String()),
    env: Type.Array(Type.String()),
    workingDir: Type.String(),
    user: Type.String(),
    exposedPorts: Type.Array(Type.String()),
    labels: Type.Record(Type.String(), Type.String()),
  }),
});
/** What an agent reports about one image it holds. */
export type ImageRecord = Static<typeof ImageRecordSchema>;

/** The image list of one node. */
export interface NodeImages {
  node: string;
  images: ImageRecord[];
  updatedAt: string;
}

/** `docker.io/library/x` and `docker.io/x` are Docker Hub's long forms of `x` (skopeo writes them); Ferry keeps the short one. */
export function stripDockerHub(ref: string): string {
  return ref.replace(/^(?:docker\.io|index\.docker\.io|registry-1\.docker\.io)\/(?:library\/)?(?=[a-z0-9])/, '');
}

/** `sample` → `sample:latest`; a reference with a tag or digest stays as it is. */
export function normalizeImageRef(input: string): string {
  const ref = stripDockerHub(input);
  if (ref.startsWith('sha256:') || /^[0-9a-f]{6,64}$/.test(ref)) return ref;
  const lastSlash = ref.lastIndexOf('/');
  return ref.slice(lastSlash + 1).includes(':') ? ref : `${ref}:latest`;
}

/** Finds the image `ref` names (tag, full id, or unique id prefix of ≥ 6 hex digits) among `images`. */
export function findImage<T extends { id: string; tags: string[] }>(images: T[], ref: string): T | undefined {
  const norm = normalizeImageRef(ref);
  const byTag = images.find((i) => i.tags.includes(norm));
  if (byTag) return byTag;
  const hex = ref.startsWith('sha256:') ? ref.slice(7) : ref;
  if (!/^[0-9a-f]{6,64}$/.test(hex)) return undefined;
  const hits = images.filter((i) => i.id.slice(7).startsWith(hex));
  return hits.length === 1 ? hits[0] : undefined;
}

/** One image and the nodes that hold it (the API's answer for one image). */
export interface ImageView extends ImageRecord {
  nodes: string[];
}
