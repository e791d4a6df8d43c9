/** Helpers of the conformance suite: open/cleanup around each case, bounded waits on watches, error checks. */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Store, WatchEvent, WatchOptions } from './types.ts';
import { isFerryError } from '../errors/index.ts';

/** How a suite gets a fresh, empty store and disposes of it. */
export type OpenStore = () => Promise<{ store: Store; cleanup(): Promise<void> }>;

/** Bound on any single wait, so a broken backend fails the case instead of hanging the run. */
export const WAIT_MS = 5_000;

/** Resolves after the given milliseconds. */
export { sleep };

/** Opens a store, runs `fn`, and always closes and cleans up, even when `fn` fails. */
export async function withStore(open: OpenStore, fn: (store: Store) => Promise<void>): Promise<void> {
  const { store, cleanup } = await open();
  try {
    await fn(store);
  } finally {
    try {
      await store.close();
    } finally {
      await cleanup();
    }
  }
}

/** Rejects when `p` does not settle within `ms`; the timer never outlives the race. */
export async function within<T>(p: Promise<T>, what: string, ms = WAIT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A watch pulled one event at a time, with its own abort controller for cleanup. */
export class Tap<T = unknown> {
  /** Aborting it ends the watch. */
  readonly controller = new AbortController();
  private readonly it: AsyncIterator<WatchEvent<T>>;

  constructor(store: Store, prefix: string, options: Omit<WatchOptions, 'signal'> = {}) {
    this.it = store.watch<T>(prefix, { ...options, signal: this.controller.signal })[Symbol.asyncIterator]();
  }

  /** The next event; fails when the watch ends or nothing comes in time. */
  async next(): Promise<WatchEvent<T>> {
    const r = await within(this.it.next(), 'a watch event');
    assert.equal(r.done, false, 'the watch ended while an event was expected');
    return r.value as WatchEvent<T>;
  }

  /** The next `n` events. */
  async take(n: number): Promise<WatchEvent<T>[]> {
    const out: WatchEvent<T>[] = [];
    for (let i = 0; i < n; i++) out.push(await this.next());
    return out;
  }

  /** The raw pending `next()`, for cases that check how a watch ends or fails. */
  pull(): Promise<IteratorResult<WatchEvent<T>>> {
    return this.it.next();
  }

  /** Ends the watch. */
  stop(): void {
    this.controller.abort();
  }
}

/** Opens a tap and stops it after `fn`, whatever happens. */
export async function withTap<T>(store: Store, prefix: string, options: Omit<WatchOptions, 'signal'>, fn: (tap: Tap<T>) => Promise<void>): Promise<void> {
  const tap = new Tap<T>(store, prefix, options);
  try {
    await fn(tap);
  } finally {
    tap.stop();
  }
}

/** Asserts that `p` rejects with the FerryError `code`, optionally with `status` and a message naming `mentions`. */
export async function rejectsWith(p: Promise<unknown>, code: string, status?: number, mentions?: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isFerryError(e, code), `expected ${code}, got ${e instanceof Error ? `${(e as { code?: string }).code ?? e.name}: ${e.message}` : String(e)}`);
    if (status !== undefined) assert.equal(e.status, status);
    if (mentions !== undefined) assert.ok(e.message.includes(mentions), `message "${e.message}" should name ${mentions}`);
    return true;
  });
}

/** Short view of an event for deep comparisons. */
export function brief(e: WatchEvent): { type: string; key: string; revision: number; value: unknown; prev?: unknown } {
  const out: { type: string; key: string; revision: number; value: unknown; prev?: unknown } = { type: e.type, key: e.kv.key, revision: e.revision, value: e.kv.value };
  if (e.prevKv) out.prev = e.prevKv.value;
  return out;
}

/** Polls `check` until it returns true or the wait bound passes. */
export async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}
