/**
 * The node-local image store (public face): OCI image layout on disk, imports of OCI layouts,
 * oci-archive / docker-archive tarballs and root filesystems, the built-in `sample` image, and
 * container root filesystems as overlays of shared, id-shifted layers (or private copies).
 */
import { LocalImageStore, type LocalImageStoreOptions } from './store.ts';
import type { ImageStore } from './types.ts';

export type { IdShift, ImageInfo, ImageProgress, ImageRunConfig, ImageStore, PreparedRootfs } from './types.ts';
export type { LocalImageStoreOptions } from './store.ts';
export type { RootfsMode } from './rootfs.ts';
export { imageErrors } from './errors.ts';
export { SAMPLE_TAG } from './sample.ts';

/** Opens (creating when missing) the image store under `options.root`. */
export function createImageStore(options: LocalImageStoreOptions): ImageStore {
  return new LocalImageStore(options);
}
