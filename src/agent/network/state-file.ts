/**
 * Small JSON state files in the network state dir: read once, rewritten atomically, and every
 * read-modify-write serialized in-process so concurrent attaches cannot interleave.
 */
import { readTextSync, writeJsonSync } from '../small-files.ts';
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

/** Writes `value` as JSON to `file` atomically (see small-files.ts for why it is not fsynced). */
export function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  try {
    writeJsonSync(file, value, { mode: 0o600, pretty: true });
    return Promise.resolve();
  } catch (e) {
    return Promise.reject(e as Error);
  }
}

/** Reads a JSON state file; `undefined` when it does not exist, NET_STATE_INVALID when it is not JSON. */
export function readJson(file: string): Promise<unknown> {
  let text: string | undefined;
  try {
    text = readTextSync(file);
  } catch (e) {
    return Promise.reject(netErrors.NET_STATE_INVALID({ file, reason: (e as Error).message }, e));
  }
  if (text === undefined) return Promise.resolve(undefined);
  try {
    return Promise.resolve(JSON.parse(text) as unknown);
  } catch (e) {
    return Promise.reject(netErrors.NET_STATE_INVALID({ file, reason: (e as Error).message }, e));
  }
}

/** True when `v` is a plain JSON object. */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
