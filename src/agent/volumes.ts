/**
 * Volumes on a node: bind mounts of host directories, local named volumes (`<data>/volumes/<name>`)
 * and shared named volumes under the cluster's shared root (a directory every host mounts). A shared
 * volume's data lives in `<root>/<name>/data`, beside its fence token `<root>/<name>/fence.json`: the
 * newest placement epoch of the container using it. A copy with an older epoch — one that was fenced
 * while its node was cut off, and whose container has since failed over — cannot open it.
 */
import { chown, mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Assignment, FenceToken, Volume } from '../model/index.ts';
import { FENCE_TOKEN_FILE, fenceAllows } from '../model/index.ts';
import type { IdMapping } from './runtime/index.ts';
import { agentErrors } from './errors.ts';
import { writeFileAtomicSync } from './small-files.ts';

/** Where named volumes live on this node. */
export interface VolumeRoots {
  /** Local named volumes: `<agent data>/volumes`. */
  readonly local: string;
  /** The cluster's shared volume root, when this node mounts one. */
  readonly shared?: string;
}

/** A volume resolved to a host directory (what the bundle mounts). */
export interface ResolvedVolume {
  readonly source: string;
  readonly target: string;
  readonly readOnly: boolean;
}

/**
 * Resolves the assignment's volumes to host directories, creating missing ones (named volumes owned
 * by the container's root), and takes the fence token of each shared one for this placement's epoch.
 * Throws VOLUME_FENCED when a newer epoch of this container holds a shared volume.
 */
export async function prepareVolumes(roots: VolumeRoots, a: Assignment, node: string, idMap: IdMapping, o: { fence?: boolean } = {}): Promise<ResolvedVolume[]> {
  const out: ResolvedVolume[] = [];
  for (const v of a.spec.volumes) {
    const kind = v.kind ?? 'bind';
    if (kind === 'bind') {
      await makeDir(v, v.source);
      out.push({ source: v.source, target: v.target, readOnly: v.readOnly });
      continue;
    }
    let base: string;
    if (kind === 'local') base = join(roots.local, v.source);
    else {
      if (!roots.shared) throw agentErrors.NO_SHARED_VOLUMES({ volume: v.source });
      base = join(roots.shared, v.source);
    }
    const data = join(base, 'data');
    const fresh = !(await exists(data));
    await makeDir(v, data);
    // The container's root is host uid idMap.hostId: a new named volume must be its to write.
    if (fresh) await chown(data, idMap.hostId, idMap.hostId);
    // A migration's restore keeps the epoch its source had: the token stays as it is.
    if (kind === 'shared' && o.fence !== false) await takeFenceToken(base, v.source, a, node);
    out.push({ source: data, target: v.target, readOnly: v.readOnly });
  }
  return out;
}

/** Reads a shared volume's fence token (undefined when none or unreadable). */
export async function readFenceToken(volumeDir: string): Promise<FenceToken | undefined> {
  try {
    return JSON.parse(await readFile(join(volumeDir, FENCE_TOKEN_FILE), 'utf8')) as FenceToken;
  } catch {
    return undefined;
  }
}

async function takeFenceToken(base: string, volume: string, a: Assignment, node: string): Promise<void> {
  const token = await readFenceToken(base);
  if (!fenceAllows(token, a.uid, a.epoch)) {
    throw agentErrors.VOLUME_FENCED({ volume, epoch: a.epoch, newer: token!.epoch, node: token!.node, at: token!.at });
  }
  // Another container's token stays (a volume two containers share is theirs to coordinate).
  if (token && token.uid !== a.uid) return;
  if (token && token.epoch === a.epoch && token.node === node) return;
  const mine: FenceToken = { container: a.name, uid: a.uid, epoch: a.epoch, node, at: new Date().toISOString() };
  writeFileAtomicSync(join(base, FENCE_TOKEN_FILE), `${JSON.stringify(mine)}\n`);
}

async function makeDir(v: Volume, dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (e) {
    throw agentErrors.BAD_VOLUME({ source: v.source, reason: (e as Error).message }, e);
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}
