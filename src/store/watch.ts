/**
 * The watch loop both backends share. A watch is a cursor over the backend's event log: it reads the
 * events after its cursor, yields them, and sleeps until the backend says the log grew. Reading from
 * the log (rather than pushing into per-watch queues) keeps memory bounded by the log however slow a
 * consumer is; a consumer that falls behind compaction gets STORE_COMPACTED, as with etcd.
 */
import type { WatchEvent } from './types.ts';
import { storeErrors } from './errors.ts';
import { checkPrefix, checkRevision } from './keyspace.ts';

/** Wakes sleeping watches when the log may have grown; a generation counter closes the read/sleep race. */
export class Notifier {
  private gen = 0;
  private readonly sleepers = new Set<() => void>();

  /** Changes whenever `notify` runs; read it before reading the log, pass it to `wait`. */
  get generation(): number {
    return this.gen;
  }

  /** Wakes every sleeper. */
  notify(): void {
    this.gen++;
    const sleepers = [...this.sleepers];
    this.sleepers.clear();
    for (const wake of sleepers) wake();
  }

  /** Resolves once the generation differs from `seen`, or when `signal` aborts; never rejects. */
  wait(seen: number, signal?: AbortSignal): Promise<void> {
    if (this.gen !== seen || signal?.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const wake = (): void => {
        signal?.removeEventListener('abort', wake);
        this.sleepers.delete(wake);
        resolve();
      };
      this.sleepers.add(wake);
      signal?.addEventListener('abort', wake, { once: true });
    });
  }
}

/** One step of reading a backend's log. */
export interface LogBatch {
  /** Events under the prefix, in revision order. */
  readonly events: WatchEvent[];
  /** The cursor to read after next time (the last revision scanned, matched or not). */
  readonly next: number;
  /** True when the step stopped at its limit, so more may follow at once. */
  readonly more: boolean;
}

/** What a backend offers the watch loop. */
export interface WatchSource {
  /** Name for error messages. */
  readonly backend: string;
  /** Woken on every write the backend learns of. */
  readonly notifier: Notifier;
  /** True once `close` ran. */
  isClosed(): boolean;
  /** Reads events after `after` under `prefix`, scanning at most `limit` log entries; throws STORE_COMPACTED. */
  readAfter(after: number, prefix: string, limit: number): LogBatch;
  /** Called when a watch starts and ends, e.g. to poll another process's writes only while someone watches. */
  watchStarted(): void;
  watchEnded(): void;
}

// Log entries scanned per step; bounds the work done between two yields to the event loop.
const SCAN_LIMIT = 512;

/** Streams events under `prefix` after revision `after` until `signal` aborts or the source closes. */
export async function* watchLog<T>(source: WatchSource, prefix: string, after: number, signal?: AbortSignal): AsyncGenerator<WatchEvent<T>> {
  checkPrefix(prefix);
  checkRevision(after, 'watch afterRevision');
  if (signal?.aborted) return;
  if (source.isClosed()) throw storeErrors.STORE_CLOSED({ backend: source.backend, operation: 'watch' });
  source.watchStarted();
  try {
    let cursor = after;
    for (;;) {
      if (signal?.aborted || source.isClosed()) return;
      const seen = source.notifier.generation;
      const batch = source.readAfter(cursor, prefix, SCAN_LIMIT);
      cursor = batch.next;
      for (const event of batch.events) {
        yield event as WatchEvent<T>;
        if (signal?.aborted || source.isClosed()) return;
      }
      if (batch.more) {
        // Let other work run between long history replays instead of hogging the loop.
        await new Promise<void>((resolve) => setImmediate(resolve));
      } else {
        await source.notifier.wait(seen, signal);
      }
    }
  } finally {
    source.watchEnded();
  }
}

/** A watch that fails on its first `next()`: errors reach the consumer through the iterator, never synchronously. */
export function failedWatch<T>(error: unknown): AsyncIterable<WatchEvent<T>> {
  return {
    [Symbol.asyncIterator]: () => ({
      next: () => Promise.reject(error),
      return: () => Promise.resolve({ done: true, value: undefined }),
    }),
  };
}
