/**
 * The agent's small state files (records, bundles, address and port tables) written atomically and
 * synchronously. Synchronous on purpose: they are a few hundred bytes, a sync write + rename costs
 * ~0.15 ms here against ~0.45 ms through the thread pool, and a container start writes about ten.
 * Not fsynced: they describe processes and mounts that a host crash ends anyway, and the rename keeps
 * them whole across an agent crash (ext4 also flushes a file renamed over another). Content that must
 * survive a power cut (image blobs, index.json) goes through the image layout's durable writer.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';

let counter = 0;

/** Writes `data` to `file` so readers see the old or the new content, never half. */
export function writeFileAtomicSync(file: string, data: string, mode = 0o644): void {
  const tmp = `${file}.${process.pid}.${++counter}.tmp`;
  try {
    writeFileSync(tmp, data, { mode });
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/** `writeFileAtomicSync` of `value` as JSON (pretty when `pretty`), creating the directory first when asked. */
export function writeJsonSync(file: string, value: unknown, o: { mode?: number; pretty?: boolean; mkdirMode?: number; dir?: string } = {}): void {
  if (o.dir !== undefined) mkdirSync(o.dir, { recursive: true, mode: o.mkdirMode ?? 0o755 });
  writeFileAtomicSync(file, `${JSON.stringify(value, null, o.pretty ? 2 : undefined)}\n`, o.mode);
}

/** The file's text, or undefined when it does not exist (other errors are thrown). */
export function readTextSync(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}
