/**
 * Mutual exclusion for index.json updates: a promise chain inside the process and an exclusive lock
 * file across processes (created with O_EXCL, holding the owner's pid so a crashed owner's lock is
 * recognised as stale).
 */
import { open, readFile, unlink, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { imageErrors } from './errors.ts';

/** A lock that serialises critical sections in this process and against other processes. */
export class IndexLock {
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly file: string, private readonly timeoutMs = 60_000) {}

  /** Runs `fn` while holding the lock. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(async () => {
      await this.acquire();
      try {
        return await fn();
      } finally {
        await unlink(this.file).catch(() => undefined);
      }
    });
    this.tail = result.catch(() => undefined);
    return result;
  }

  private async acquire(): Promise<void> {
    const deadline = Date.now() + this.timeoutMs;
    for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
      try {
        const fh = await open(this.file, 'wx', 0o600);
        await fh.writeFile(`${process.pid}\n`);
        await fh.close();
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      if (await this.stale()) {
        await unlink(this.file).catch(() => undefined);
        continue;
      }
      if (Date.now() > deadline) throw imageErrors.IMAGE_STORE_LOCKED({ root: dirname(this.file), file: this.file });
      await sleep(delay);
    }
  }

  /** A lock is stale when its owner pid is gone, or it is empty and older than a few seconds (crash mid-write). */
  private async stale(): Promise<boolean> {
    try {
      const text = (await readFile(this.file, 'utf8')).trim();
      const pid = Number(text);
      if (!text || !Number.isInteger(pid) || pid <= 0) {
        const st = await stat(this.file);
        return Date.now() - st.mtimeMs > 5_000;
      }
      if (pid === process.pid) return false;
      try {
        process.kill(pid, 0);
        return false;
      } catch (e) {
        return (e as NodeJS.ErrnoException).code === 'ESRCH';
      }
    } catch {
      return false;
    }
  }
}
