/**
 * The small files of a container's state directory that the agent reads and writes itself:
 * `state.json` (Ferry's record) and `exit.json` (written by the shim, read here).
 */
import { readFileSync } from 'node:fs';
import { writeJsonSync } from '../small-files.ts';
import type { ContainerPaths } from './shim.ts';
import type { ExitInfo } from './types.ts';

/** Ferry's own facts about a container, kept beside the bundle. */
export interface ContainerRecord {
  readonly createdAt: string;
  readonly startedAt?: string;
  /** cgroup path given to runc, `/<parent>/<id>`. */
  readonly cgroupsPath: string;
  /** The cgroup's oom_kill count right after create, to tell whether it rose. */
  readonly oomBaseline?: number;
}

/** Writes JSON to a file atomically (temp file + rename). */
export function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  writeJsonSync(file, value);
  return Promise.resolve();
}

function readJson(file: string): Promise<unknown> {
  try {
    return Promise.resolve(JSON.parse(readFileSync(file, 'utf8')) as unknown);
  } catch {
    return Promise.resolve(undefined);
  }
}

/** The container's record, or undefined when there is none. */
export async function readRecord(paths: ContainerPaths): Promise<ContainerRecord | undefined> {
  const v = (await readJson(paths.state)) as Partial<ContainerRecord> | undefined;
  if (!v || typeof v.createdAt !== 'string' || typeof v.cgroupsPath !== 'string') return undefined;
  return v as ContainerRecord;
}

/** Merges fields into the record. */
export async function updateRecord(paths: ContainerPaths, patch: Partial<ContainerRecord>): Promise<void> {
  const current = await readRecord(paths);
  await writeJsonAtomic(paths.state, { ...current, ...patch });
}

/** The exit the shim wrote (`signal: null` becomes absent), or undefined when there is none yet. */
export async function readExit(paths: ContainerPaths): Promise<ExitInfo | undefined> {
  const v = (await readJson(paths.exit)) as { exitCode?: unknown; signal?: unknown; finishedAt?: unknown; oomKilled?: unknown } | undefined;
  if (!v || typeof v.exitCode !== 'number') return undefined;
  return {
    exitCode: v.exitCode,
    ...(typeof v.signal === 'string' ? { signal: v.signal } : {}),
    finishedAt: typeof v.finishedAt === 'string' ? v.finishedAt : new Date(0).toISOString(),
    ...(typeof v.oomKilled === 'boolean' ? { oomKilled: v.oomKilled } : {}),
  };
}

/** Stores an exit (also used to add `oomKilled` once known, so it survives the cgroup's removal). */
export async function writeExit(paths: ContainerPaths, exit: ExitInfo): Promise<void> {
  await writeJsonAtomic(paths.exit, { ...exit, signal: exit.signal ?? null });
}
