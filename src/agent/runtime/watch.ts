/**
 * Waiting for a file in a directory to change: fs.watch wakes us early, a poll period covers the
 * events inotify can miss (and filesystems without it).
 */
import { watch } from 'node:fs';
import type { FSWatcher } from 'node:fs';

/** A wake-up source for one directory; `close()` when done. */
export interface DirWatch {
  /** Resolves on the next change in the directory, after `ms`, or on abort — whichever is first. */
  next(ms: number, signal?: AbortSignal): Promise<void>;
  close(): void;
}

/** Watches `dir` (a missing directory just means polling). */
export function watchDir(dir: string): DirWatch {
  const waiters = new Set<() => void>();
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dir, () => [...waiters].forEach((w) => w()));
    watcher.on('error', () => undefined);
  } catch {
    watcher = undefined;
  }
  return {
    next(ms, signal) {
      return new Promise((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          waiters.delete(done);
          signal?.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, ms);
        waiters.add(done);
        if (signal?.aborted) done();
        else signal?.addEventListener('abort', done, { once: true });
      });
    },
    close() {
      watcher?.close();
      waiters.forEach((w) => w());
    },
  };
}
