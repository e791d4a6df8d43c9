/**
 * Small JSON state files in the network state dir: read once, rewritten atomically, and every
 * read-modify-write serialized in-process so concurrent attaches cannot interleave.
 */
import { open, readFile, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { netErrors } from './errors.ts';

/** Runs async critical sections one after another, in call order. */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  /** Runs `fn` after every section queued before it has settled; its result or error is passed through. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    // The queue must go on after a failed section, so the chain swallows errors; callers still see them.
    this.tail = next.catch(() => undefined);
    return next;
  }
}

let tmpCounter = 0;

/** Writes `value` as JSON to `file` atomically: temp file, fsync, rename, fsync of the directory. */
export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  const tmp = `${file}.${process.pid}.${++tmpCounter}.tmp`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(`${JSON.stringify(value, null, 2)}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  // The rename is only durable once the directory entry is on disk.
  const dir = await open(dirname(file), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/** Reads a JSON state file; `undefined` when it does not exist, NET_STATE_INVALID when it is not JSON. */
export async function readJson(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw netErrors.NET_STATE_INVALID({ file, reason: (e as Error).message }, e);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw netErrors.NET_STATE_INVALID({ file, reason: (e as Error).message }, e);
  }
}

/** True when `v` is a plain JSON object. */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
