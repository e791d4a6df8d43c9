/**
 * The agent's own memory of each container it runs, one JSON file per container under
 * `<data>/containers/<runtimeId>/record.json`. Written before any side effect of a create, so an
 * agent killed half-way finds the record at restart and can finish or undo what it began.
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import { writeJsonSync } from './small-files.ts';
import { join } from 'node:path';

/** What the agent remembers about one container. */
export interface ContainerRecord {
  name: string;
  uid: string;
  runtimeId: string;
  epoch: number;
  /** Generation whose spec was last applied. */
  appliedGeneration: number;
  /** Container IP once the network was attached. */
  ip?: string;
  rootfsMode?: string;
  /** Set while this (source) copy is frozen for migration <id>: the loop must not republish or report it. */
  outgoing?: string;
  /** Set while this is the not-yet-switched target copy of migration <id>: not torn down for lack of an assignment. */
  incoming?: string;
  /** Set before the first runc call: a runc container may exist and must be deleted before a new create. */
  launched?: boolean;
  restartCount: number;
  /** Consecutive quick failures, for the restart backoff. */
  backoffStep?: number;
  /** Generation whose create failed (not retried under restart policy `no` until the spec changes). */
  failedGeneration?: number;
  /** Why that create failed. */
  failure?: string;
  /** True when the user stopped it (so an exit is not a failure and restart policy does not apply). */
  stoppedByUser: boolean;
  /** Set when this host fenced itself (the shim killed the container): it starts again, whatever its restart policy, once the manager says the node is Ready and still assigns it here. */
  fencedAt?: string;
  /** When the next automatic restart may happen (restart policy backoff). */
  nextRestartAt?: string;
  lastExit?: { exitCode: number; signal?: string; finishedAt: string; oomKilled?: boolean };
  startedAt?: string;
  /** Resource limits currently applied to the cgroup. */
  appliedResources?: { memoryBytes?: number; cpus?: number; pidsLimit?: number };
  /** Last dumpability scan while running. */
  migratable?: { ok: boolean; reasons: string[]; checkedAt: string };
  createdAt: string;
}

/** Reads and writes container records. */
export class RecordStore {
  private readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** The directory holding the container's record, rootfs and overlay dirs. */
  containerDir(runtimeId: string): string {
    return join(this.dir, runtimeId);
  }

  /** Every record on disk (unreadable ones are skipped and reported as orphans by `orphanDirs`). */
  async list(): Promise<ContainerRecord[]> {
    const out: ContainerRecord[] = [];
    for (const id of await readdir(this.dir).catch(() => [] as string[])) {
      const r = await this.get(id);
      if (r) out.push(r);
    }
    return out;
  }

  /** Container directories without a readable record (left by a crash before the first write). */
  async orphanDirs(): Promise<string[]> {
    const out: string[] = [];
    for (const id of await readdir(this.dir).catch(() => [] as string[])) {
      if (!(await this.get(id))) out.push(id);
    }
    return out;
  }

  /** The record of `runtimeId`, or undefined. */
  async get(runtimeId: string): Promise<ContainerRecord | undefined> {
    try {
      return JSON.parse(await readFile(join(this.dir, runtimeId, 'record.json'), 'utf8')) as ContainerRecord;
    } catch {
      return undefined;
    }
  }

  /** Writes the record atomically. */
  save(r: ContainerRecord): Promise<void> {
    const dir = this.containerDir(r.runtimeId);
    writeJsonSync(join(dir, 'record.json'), r, { pretty: true, dir });
    return Promise.resolve();
  }

  /** Removes the container's directory (after its rootfs was released). */
  async remove(runtimeId: string): Promise<void> {
    await rm(this.containerDir(runtimeId), { recursive: true, force: true });
  }
}
