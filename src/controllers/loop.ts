/** A reconcile loop: watch prefixes, queue the names that changed, reconcile one at a time, resync periodically. */
import type { Store } from '../store/index.ts';
import { keyName } from '../model/index.ts';

/** Options of a loop. */
export interface LoopOptions {
  readonly store: Store;
  /** Prefixes whose changes queue the key's last segment (the object name). */
  readonly prefixes: string[];
  /** Lists every name to reconcile at start and on resync. */
  readonly listNames: () => Promise<string[]>;
  readonly reconcile: (name: string) => Promise<void>;
  readonly resyncMs?: number;
  readonly onError?: (name: string, e: unknown) => void;
}

/** A running loop; `stop()` ends it. */
export interface Loop {
  stop(): Promise<void>;
  /** Resolves when the queue is empty (tests). */
  idle(): Promise<void>;
}

/** A loop that can also be told to reconcile a name (a deadline passed, say). */
export interface ReconcileLoop extends Loop {
  enqueue(name: string): void;
}

/** Starts a reconcile loop. */
export function startLoop(o: LoopOptions): ReconcileLoop {
  const ac = new AbortController();
  const queue = new Set<string>();
  let wake: (() => void) | undefined;
  let idleWaiters: (() => void)[] = [];
  let busy = false;

  const enqueue = (name: string): void => {
    queue.add(name);
    wake?.();
  };

  const worker = (async () => {
    while (!ac.signal.aborted) {
      const next = queue.values().next();
      if (next.done) {
        busy = false;
        for (const w of idleWaiters) w();
        idleWaiters = [];
        await new Promise<void>((r) => { wake = r; });
        wake = undefined;
        continue;
      }
      busy = true;
      queue.delete(next.value);
      try {
        await o.reconcile(next.value);
      } catch (e) {
        o.onError?.(next.value, e);
        // Retry later; a persistent failure must not spin.
        setTimeout(() => { if (!ac.signal.aborted) enqueue(next.value); }, 1000).unref();
      }
    }
  })();

  const watchers = o.prefixes.map(async (prefix) => {
    while (!ac.signal.aborted) {
      try {
        const rev = await o.store.revision();
        for (const n of await o.listNames()) enqueue(n);
        for await (const ev of o.store.watch(prefix, { afterRevision: rev, signal: ac.signal })) enqueue(keyName(ev.kv.key));
      } catch (e) {
        if (ac.signal.aborted) return;
        o.onError?.(prefix, e);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  });

  const resync = setInterval(() => {
    o.listNames().then((ns) => ns.forEach(enqueue), (e) => o.onError?.('resync', e));
  }, o.resyncMs ?? 30_000);
  resync.unref();

  return {
    enqueue: (name) => { if (!ac.signal.aborted) enqueue(name); },
    async stop() {
      ac.abort();
      clearInterval(resync);
      wake?.();
      await Promise.allSettled([worker, ...watchers]);
    },
    idle() {
      if (!busy && queue.size === 0) return Promise.resolve();
      return new Promise<void>((r) => idleWaiters.push(r));
    },
  };
}
