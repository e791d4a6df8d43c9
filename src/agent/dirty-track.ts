/**
 * Which pages of a container's processes were written between two looks, on kernels without
 * soft-dirty bits (this one): native/dirtytrack/ferry-dirty-track, which uses userfaultfd
 * write-protection in asynchronous mode and PAGEMAP_SCAN (Linux 6.7+). The building block for a
 * pre-copy final round that reads only the pages written since the last round instead of all memory.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The helper scripts/setup builds. */
export const DIRTY_TRACK_PATH = fileURLToPath(new URL('../../build/ferry-dirty-track', import.meta.url));

/** How long the helper may take to answer one command (a scan of a big process takes milliseconds). */
const ASK_TIMEOUT_MS = 15_000;

/** A page range [start, end) in a process's address space. */
export type Range = readonly [start: bigint, end: bigint];

/** One process's part of a scan. */
export interface ProcessScan {
  readonly pid: number;
  /** Pages written since the last scan (or since tracking began). */
  readonly written: Range[];
  /** Whole mappings nothing vouches for (new, moved, or the process exec'd): every page may have changed. */
  readonly untracked: Range[];
  /** The process exited (or can no longer be looked at): nothing is known of its memory. */
  readonly gone: boolean;
}

/** What a scan found. */
export interface Scan {
  readonly processes: ProcessScan[];
  /** Pages in `written` ranges, all processes. */
  readonly writtenPages: number;
  /** Pages spanned by `untracked` mappings, all processes. */
  readonly untrackedPages: number;
}

/** Parses the helper's answer to `scan` (the lines up to and including `end W U`). */
export function parseScan(text: string): Scan {
  const processes: { pid: number; written: Range[]; untracked: Range[]; gone: boolean }[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const [kind, a, b] = line.split(' ');
    const cur = processes.at(-1);
    if (kind === 'pid') processes.push({ pid: Number(a), written: [], untracked: [], gone: false });
    else if (kind === 'gone' && cur) cur.gone = true;
    else if ((kind === 'w' || kind === 'u') && cur && a && b) (kind === 'w' ? cur.written : cur.untracked).push([BigInt(`0x${a}`), BigInt(`0x${b}`)]);
    else if (kind === 'end') return { processes, writtenPages: Number(a), untrackedPages: Number(b) };
    else throw new Error(`ferry-dirty-track: unexpected line "${line}"`);
  }
  throw new Error('ferry-dirty-track: the scan ended without its "end" line');
}

/** A running tracker; `stop()` removes every write protection it set. */
export class DirtyTracker {
  private out = '';
  private err = '';
  private waiter: (() => void) | undefined;
  private readonly exited: Promise<void>;
  /** Commands answer in order: one at a time. */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    child.stdout.on('data', (b: Buffer) => { this.out += b.toString(); this.waiter?.(); });
    child.stderr.on('data', (b: Buffer) => { this.err += b.toString(); });
    child.stdin.on('error', () => undefined); // an early exit is reported by `exited`
    this.exited = new Promise((resolve) => child.on('close', () => { resolve(); this.waiter?.(); }));
  }

  /** Whether the helper is built here. */
  static available(helper = DIRTY_TRACK_PATH): boolean {
    return existsSync(helper);
  }

  /** Starts the helper (tracking nothing yet). */
  static start(helper = DIRTY_TRACK_PATH): DirtyTracker {
    return new DirtyTracker(spawn(helper, [], { stdio: ['pipe', 'pipe', 'pipe'] }));
  }

  /**
   * Sends `command` and returns its answer: the text up to and including the first line matching
   * `last`. When none comes within `timeoutMs` (a process that never stops for ptrace, e.g. one in a
   * frozen cgroup, holds the helper in waitpid), the helper is killed — the kernel then lets the
   * process go — and the call fails.
   */
  private ask(command: string, last: RegExp, timeoutMs = ASK_TIMEOUT_MS): Promise<string> {
    const run = async (): Promise<string> => {
      this.child.stdin.write(`${command}\n`);
      let late = false;
      const timer = setTimeout(() => { late = true; this.child.kill('SIGKILL'); }, timeoutMs);
      try {
        return await this.answer(last);
      } catch (e) {
        if (late) throw new Error(`ferry-dirty-track gave no answer to "${command}" within ${timeoutMs / 1000} s (a process that never stops for ptrace?); it was ended`, { cause: e });
        throw e;
      } finally {
        clearTimeout(timer);
      }
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /** The helper's output up to and including the first line matching `last`, once it is there. */
  private async answer(last: RegExp): Promise<string> {
    for (;;) {
      const m = last.exec(this.out);
      if (m) {
        const answer = this.out.slice(0, m.index + m[0].length);
        this.out = this.out.slice(m.index + m[0].length);
        return answer;
      }
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`ferry-dirty-track exited (${this.child.exitCode ?? this.child.signalCode}): ${this.err.trim() || 'no message'}`);
      }
      await new Promise<void>((resolve) => { this.waiter = resolve; });
      this.waiter = undefined;
    }
  }

  /** Starts tracking process `pid` (a thread-group leader); its first scan reports all its mappings as untracked. */
  async track(pid: number, o: { timeoutMs?: number } = {}): Promise<void> {
    const answer = await this.ask(`track ${pid}`, /^(ok|err) .*\n/m, o.timeoutMs);
    const m = /^err \d+ (.*)$/m.exec(answer);
    if (m) throw new Error(`cannot track the writes of process ${pid}: ${m[1]}`);
  }

  /**
   * Pages written since the last scan, per process; protects them again. With `frozen` (the
   * processes are in a frozen cgroup), one that exec'd is reported gone rather than tracked again:
   * that needs a ptrace stop, which a frozen process never reaches.
   */
  async scan(o: { frozen?: boolean } = {}): Promise<Scan> {
    return parseScan(await this.ask(o.frozen ? 'scan frozen' : 'scan', /^end \d+ \d+\n/m));
  }

  /** Ends tracking: the helper closes its userfaultfds (the kernel then drops every protection) and exits. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.stdin.end('quit\n');
    const killed = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(killed);
  }
}

const PAGE = 4096;

/** Byte ranges as [firstPage, endPage) page numbers (partial pages included). */
function pageRangesOf(ranges: readonly Range[]): [number, number][] {
  return ranges.map(([s, e]): [number, number] => [Number(s / 4096n), Number((e + 4095n) / 4096n)]);
}

/** A process's written and untracked ranges of a scan as sorted, merged [firstPage, endPage) page numbers. */
export function changedPageRanges(p: ProcessScan): [number, number][] {
  return mergePageRanges(pageRangesOf(p.written), pageRangesOf(p.untracked));
}

/** The pid of host process `pid` inside its own pid namespace (the NSpid line's last field). */
export function namespacePid(pid: number): number {
  const m = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  const ids = m?.[1]?.trim().split(/\s+/) ?? [];
  const last = Number(ids[ids.length - 1]);
  if (!Number.isInteger(last) || last <= 0) throw new Error(`process ${pid} has no NSpid line`);
  return last;
}

/** Reads pages of process `pid` as they are now through /proc/PID/mem (freeze it first); close() when done. */
export function openMemory(pid: number): { read(firstPage: number, count: number, buf: Buffer): void; close(): void } {
  const fd = openSync(`/proc/${pid}/mem`, 'r');
  return {
    read(firstPage, count, buf) {
      const bytes = count * PAGE;
      let done = 0;
      while (done < bytes) {
        const n = readSync(fd, buf, done, bytes - done, firstPage * PAGE + done);
        if (n <= 0) throw new Error(`process ${pid}: its memory at 0x${(firstPage * PAGE + done).toString(16)} could not be read`);
        done += n;
      }
    },
    close: () => closeSync(fd),
  };
}

/** Reads pages as openMemory's `read` does. */
export type PageReader = (firstPage: number, count: number, buf: Buffer) => void;

/**
 * Reads `ranges` (sorted [firstPage, endPage) page numbers) through `read` now and returns a reader
 * that serves them from memory and anything else through `read`: the written pages can be taken while
 * CRIU dumps the frozen process in parallel, and the image is written from them afterwards.
 */
export function prefetch(read: PageReader, ranges: readonly (readonly [number, number])[]): PageReader {
  const held = ranges.map(([s, e]) => {
    const buf = Buffer.allocUnsafe((e - s) * PAGE);
    read(s, e - s, buf);
    return { s, e, buf };
  });
  return (first, count, buf) => {
    let lo = 0;
    for (let hi = held.length; lo < hi;) {
      const mid = (lo + hi) >>> 1;
      if (held[mid]!.e <= first) lo = mid + 1;
      else hi = mid;
    }
    const h = held[lo];
    if (h && h.s <= first && first + count <= h.e) h.buf.copy(buf, 0, (first - h.s) * PAGE, (first - h.s + count) * PAGE);
    else read(first, count, buf);
  };
}

/** Merges sorted-or-not [firstPage, endPage) ranges into sorted, non-overlapping ones (adjacent ones joined). */
export function mergePageRanges(...lists: (readonly (readonly [number, number])[])[]): [number, number][] {
  const all = lists.flat().filter(([s, e]) => e > s).map(([s, e]): [number, number] => [s, e]).sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const r of all) {
    const last = out[out.length - 1];
    if (last && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]);
    else out.push(r);
  }
  return out;
}

/** One line of /proc/PID/maps: pages [first, end), the permissions ("rw-p"), the inode ("0" for none) and the name ('' for none). */
interface Mapping {
  readonly first: number;
  readonly end: number;
  readonly perms: string;
  readonly inode: string;
  readonly name: string;
}

/** The mappings of process `pid` now. */
function mappings(pid: number): Mapping[] {
  const out: Mapping[] = [];
  for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ (\d+)\s*(.*)$/.exec(line);
    if (m) out.push({ first: Number(BigInt(`0x${m[1]}`) / 4096n), end: Number(BigInt(`0x${m[2]}`) / 4096n), perms: m[3]!, inode: m[4]!, name: m[5]! });
  }
  return out;
}

/** Special mappings a checkpoint never takes pages of (the vDSO it always takes, whole). */
const NEVER_DUMPED = /^\[(vvar|vvar_vclock|vsyscall)\]$/;

/** pagemap bits: the page is present, swapped, or a file page / shared anonymous page; the frame number. */
const PM_PRESENT = 1n << 63n;
const PM_SWAPPED = 1n << 62n;
const PM_FILE_OR_SHARED = 1n << 61n;
const PM_PFN = (1n << 55n) - 1n;

let zeroPfnCache: bigint | undefined;

/**
 * The frame number of the kernel's zero page (ferry-dirty-track zero-pfn), which a checkpoint leaves out;
 * 2^55 - 1, which no page has, on a kernel without a shared zero page (as CRIU with native/criu/zero-page.c).
 */
export function zeroPfn(helper = DIRTY_TRACK_PATH): bigint {
  if (zeroPfnCache === undefined) {
    const r = spawnSync(helper, ['zero-pfn'], { encoding: 'utf8' });
    if (r.status !== 0 || !/^\d+\n$/.test(r.stdout)) throw new Error(`ferry-dirty-track zero-pfn failed: ${r.error?.message ?? (r.stderr.trim() || `exit ${r.status}`)}`);
    zeroPfnCache = BigInt(r.stdout.trim());
  }
  return zeroPfnCache;
}

/**
 * The pages of process `pid` a checkpoint takes into its pagemap, as sorted [firstPage, endPage)
 * ranges, by CRIU's rule (should_dump_page): in private mappings, the pages present or swapped that
 * are anonymous (a file mapping's pages not yet written are the file's; shared memory is dumped
 * apart) and not the zero page, limited to `within` when given; and always the whole vDSO and the
 * page CRIU's parasite injection makes private (so the layouts of a round and of the final dump
 * match, see flattenImage). Read from
 * /proc/PID/maps and /proc/PID/pagemap while the process runs: a page it maps or first writes
 * afterwards is the tracker's to report.
 */
export function anonPageRanges(pid: number, within?: readonly (readonly [number, number])[]): [number, number][] {
  const zero = zeroPfn();
  const spans: [number, number][] = [];
  const whole: [number, number][] = [];
  let firstExec = false;
  for (const m of mappings(pid)) {
    if (m.perms[3] !== 'p' || NEVER_DUMPED.test(m.name)) continue;
    const span: [number, number] = [m.first, m.end];
    (m.name === '[vdso]' ? whole : spans).push(span);
    // CRIU injects its parasite by writing at the start of the first executable mapping (and putting
    // the bytes back): from its first dump on, that page is a private copy, which it dumps.
    if (m.perms[2] === 'x' && !firstExec) {
      firstExec = true;
      whole.push([span[0], span[0] + 1]);
    }
  }
  const limit = (r: [number, number][]): [number, number][] => (within ? intersectPageRanges(r, mergePageRanges(within)) : r);
  const wanted = limit(spans);
  const out: [number, number][] = [];
  const fd = openSync(`/proc/${pid}/pagemap`, 'r');
  try {
    const CHUNK = 65536; // pages per read: 512 KiB of pagemap
    const buf = Buffer.allocUnsafe(CHUNK * 8);
    for (const [s, e] of wanted) {
      for (let p = s; p < e; p += CHUNK) {
        const n = Math.min(CHUNK, e - p);
        const got = readSync(fd, buf, 0, n * 8, p * 8) / 8;
        for (let i = 0; i < got; i++) {
          const v = buf.readBigUInt64LE(i * 8);
          if (!(v & (PM_PRESENT | PM_SWAPPED)) || (v & PM_FILE_OR_SHARED) || ((v & PM_PRESENT) && (v & PM_PFN) === zero)) continue;
          const last = out[out.length - 1];
          if (last && last[1] === p + i) last[1]++;
          else out.push([p + i, p + i + 1]);
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return mergePageRanges(out, whole);
}

/** The pages in both sorted, non-overlapping range lists. */
export function intersectPageRanges(a: readonly (readonly [number, number])[], b: readonly (readonly [number, number])[]): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 0, j = 0; i < a.length && j < b.length;) {
    const [s, e] = [Math.max(a[i]![0], b[j]![0]), Math.min(a[i]![1], b[j]![1])];
    if (s < e) out.push([s, e]);
    if (a[i]![1] < b[j]![1]) i++;
    else j++;
  }
  return out;
}

/** The pages of sorted, non-overlapping `a` that are not in sorted, non-overlapping `b`. */
export function subtractPageRanges(a: readonly (readonly [number, number])[], b: readonly (readonly [number, number])[]): [number, number][] {
  const out: [number, number][] = [];
  let j = 0;
  for (const [s0, e] of a) {
    let s = s0;
    while (j < b.length && b[j]![1] <= s) j++;
    for (let k = j; k < b.length && b[k]![0] < e && s < e; k++) {
      if (b[k]![0] > s) out.push([s, b[k]![0]]);
      s = Math.max(s, b[k]![1]);
    }
    if (s < e) out.push([s, e]);
  }
  return out;
}

/**
 * The pages of frozen process `pid` a final dump may take from the previous round, as sorted
 * [firstPage, endPage) ranges: the private anonymous mappings the tracker protects (those it names
 * in neither `written` nor `untracked` are unchanged, see native/dirtytrack) minus `changed`, minus
 * the page each thread's stack pointer is in (CRIU dumps those eagerly, never as lazy pages, so they
 * must stay its own). Undefined — nothing vouched for — when the process has locked memory (CRIU
 * treats locked mappings apart) or a thread's stack pointer cannot be read.
 */
export function cleanPageRanges(pid: number, changed: readonly (readonly [number, number])[]): [number, number][] | undefined {
  if (/^VmLck:\s+[1-9]/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'))) return undefined;
  // The tracker's own rule (kind() in ferry-dirty-track.c): private, no file (inode 0), not a special mapping.
  const tracked = mappings(pid).filter((m) => m.perms[3] === 'p' && m.inode === '0' && m.name !== '[vdso]' && !NEVER_DUMPED.test(m.name))
    .map((m): [number, number] => [m.first, m.end]);
  const stacks: [number, number][] = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    // "NR ARGS… SP PC" in a system call, "-1 SP PC" outside one, "running" when it runs (not frozen).
    const f = readFileSync(`/proc/${pid}/task/${tid}/syscall`, 'utf8').trim().split(' ');
    if (f.length < 3) return undefined;
    const sp = Number(BigInt(f[f.length - 2]!) / 4096n);
    stacks.push([sp, sp + 1]);
  }
  return subtractPageRanges(subtractPageRanges(mergePageRanges(tracked), mergePageRanges(changed)), mergePageRanges(stacks));
}
