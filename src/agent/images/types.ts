/**
 * The node-local image store: OCI image layout on disk (content-addressed blobs + index.json),
 * layers unpacked once and shared between containers through overlayfs (or copied when the kernel
 * cannot overlay).
 */

/** The parts of an OCI image config a container needs. */
export interface ImageRunConfig {
  readonly entrypoint: string[];
  readonly cmd: string[];
  readonly env: string[];
  readonly workingDir: string;
  readonly user: string;
  readonly exposedPorts: string[];
  readonly labels: Record<string, string>;
}

/** An image in the store. */
export interface ImageInfo {
  /** Manifest digest, `sha256:…`. */
  readonly id: string;
  /** Names pointing at it, e.g. `sample:latest`. */
  readonly tags: string[];
  /** Sum of compressed layer sizes. */
  readonly size: number;
  readonly layers: string[];
  readonly created: string;
  readonly architecture: string;
  readonly os: string;
  readonly config: ImageRunConfig;
}

/** Progress of a long image operation. */
export interface ImageProgress {
  readonly phase: string;
  readonly done: number;
  readonly total: number;
}

/** A root filesystem prepared for one container. */
export interface PreparedRootfs {
  /** The path to give runc as root.path. */
  readonly path: string;
  /** `overlay` when layers are shared by overlayfs, `copy` when flattened into a private copy. */
  readonly mode: 'overlay' | 'copy';
  readonly image: ImageInfo;
  /**
   * With `deferMount`: the overlay is not mounted yet; whoever starts the container mounts it on
   * `path` with these mount(2) options (relative lower dirs resolve against `cwd`).
   */
  readonly mount?: { readonly options: string; readonly cwd?: string };
}

/** Ownership shift applied to unpacked files so a user namespace's root owns them. */
export interface IdShift {
  readonly hostId: number;
  readonly size: number;
}

/** The image store. */
export interface ImageStore {
  /**
   * Imports an OCI layout directory, an OCI or docker-archive tarball (as `skopeo copy` writes), or a
   * rootfs tar / directory. `name` tags the result (required for rootfs sources).
   */
  import(source: string, options?: { name?: string; onProgress?: (p: ImageProgress) => void }): Promise<ImageInfo>;
  /** Every image, newest first. */
  list(): Promise<ImageInfo[]>;
  /** Finds an image by tag (`sample`, `sample:latest`), full id or unique id prefix; FERRY_ERR_IMAGE_NOT_FOUND otherwise. */
  inspect(ref: string): Promise<ImageInfo>;
  /** Removes a tag, or the whole image by id; refuses (FERRY_ERR_IMAGE_IN_USE) while a rootfs uses it unless forced. */
  remove(ref: string, options?: { force?: boolean }): Promise<void>;
  /** Builds the built-in `sample` image when it is missing (no network). */
  ensureSample(): Promise<ImageInfo>;
  /**
   * Does the once-per-process checks (whether overlayfs works) now. The overlay probe's unmount
   * syncs the whole filesystem; paid at the first prepareRootfs instead, it lands inside a migration
   * (the target prepares the root filesystem while the source is frozen) right after the image's
   * pages were written — 0.85 s at 1 GiB.
   */
  warmUp(): Promise<void>;
  /**
   * Mounts (overlay) or copies the image's layers as the container's root filesystem under `dir`.
   * With `deferMount` an overlay that is not mounted yet is left to the caller (see PreparedRootfs.mount).
   */
  prepareRootfs(containerId: string, ref: string, dir: string, options?: { deferMount?: boolean }): Promise<PreparedRootfs>;
  /** Unmounts and removes what prepareRootfs made in `dir`; a no-op when nothing is there. */
  releaseRootfs(containerId: string, dir: string): Promise<void>;
}
