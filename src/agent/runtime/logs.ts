/**
 * Reader of the JSON-lines log the shim writes: the last N entries, and follow mode that keeps
 * reading until the container's exit file appears (the shim drains every pipe before writing it).
 */
import { existsSync } from 'node:fs';
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';
import type { LogEntry } from './types.ts';
import { watchDir } from './watch.ts';
import type { DirWatch } from './watch.ts';

/** Where to read: the log file, the exit file that ends following, and the directory holding both. */
export interface LogSource {
  readonly dir: string;
  readonly log: string;
  readonly exit: string;
}

/** Options of a log read. */
export interface LogReadOptions {
  readonly follow?: boolean;
  /** Only the last N entries (0: none, only what comes next when following). */
  readonly tail?: number;
  readonly signal?: AbortSignal;
  /** Poll period when file events are missed. */
  readonly pollMs?: number;
}

const CHUNK = 64 * 1024;

/** Parses one log line; undefined for lines that are not a log entry. */
export function parseLogLine(line: string): LogEntry | undefined {
  if (line.trim() === '') return undefined;
  try {
    const v = JSON.parse(line) as Partial<LogEntry>;
    if (typeof v.line !== 'string' || (v.stream !== 'stdout' && v.stream !== 'stderr')) return undefined;
    return { time: typeof v.time === 'string' ? v.time : '', stream: v.stream, line: v.line };
  } catch {
    return undefined;
  }
}

/** Byte offset where the last `n` complete lines of the file start (a trailing partial line is ignored). */
export async function tailOffset(file: FileHandle, size: number, n: number): Promise<number> {
  const buf = Buffer.alloc(CHUNK);
  let pos = size;
  let seenEnd = false; // passed the last '\n' (end of complete content)
  let newlines = 0;
  while (pos > 0) {
    const len = Math.min(CHUNK, pos);
    pos -= len;
    await file.read(buf, 0, len, pos);
    for (let i = len - 1; i >= 0; i--) {
      if (buf[i] !== 0x0a) continue;
      if (!seenEnd) {
        seenEnd = true;
        if (n === 0) return pos + i + 1;
        continue;
      }
      if (++newlines === n) return pos + i + 1;
    }
  }
  return 0;
}

/** Yields the log's entries; with `follow`, keeps going until the exit file exists, the dir is gone or the signal aborts. */
export async function* readLogs(source: LogSource, options: LogReadOptions = {}): AsyncGenerator<LogEntry> {
  const { follow = false, tail, signal, pollMs = 250 } = options;
  const watcher: DirWatch | undefined = follow ? watchDir(source.dir) : undefined;
  let file: FileHandle | undefined;
  try {
    let offset = -1;
    let pending = '';
    const decoder = new StringDecoder('utf8'); // a read may end inside a multi-byte character
    const buf = Buffer.alloc(CHUNK);
    for (;;) {
      if (signal?.aborted) return;
      // Seen before reading: when the exit file exists, the shim has already written every line.
      const exited = existsSync(source.exit);
      if (!file) {
        file = await open(source.log, 'r').catch(() => undefined);
        if (file) {
          const { size } = await file.stat();
          offset = tail === undefined ? 0 : await tailOffset(file, size, tail);
        }
      }
      if (file) {
        for (;;) {
          const { bytesRead } = await file.read(buf, 0, CHUNK, offset);
          if (bytesRead === 0) break;
          offset += bytesRead;
          const lines = (pending + decoder.write(buf.subarray(0, bytesRead))).split('\n');
          pending = lines.pop() ?? '';
          for (const line of lines) {
            const entry = parseLogLine(line);
            if (entry) yield entry;
            if (signal?.aborted) return;
          }
        }
      }
      if (!follow || exited || !existsSync(source.dir)) return;
      await watcher?.next(pollMs, signal);
    }
  } finally {
    watcher?.close();
    await file?.close();
  }
}
