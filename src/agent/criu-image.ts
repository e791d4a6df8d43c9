/**
 * CRIU pagemap images and Ferry's own incremental images for pre-copy. This kernel has no soft-dirty
 * tracking, so CRIU's pre-dump chain is refused; pre-copy rounds are full `--leave-running` dumps and
 * Ferry compares each round's pages by content with the round the target already holds. Only changed
 * pages travel: unchanged runs become PE_PARENT entries and a `parent` link names the earlier round,
 * which CRIU's restore follows by itself (see shared/notes/live-migration-facts.md, "Pre-copy").
 *
 * Format (CRIU 4.2, criu/image.c, images/pagemap.proto): pagemap-*.img holds magic words (two with
 * img_common_magic, one in older images), then messages each prefixed by a 32-bit little-endian
 * length: one pagemap_head { pages_id = 1 } and pagemap_entry { vaddr = 1, compat_nr_pages = 2,
 * in_parent = 3, flags = 4, nr_pages = 5 }. pages-<pages_id>.img is raw 4 KiB pages, one per page of
 * every entry with PE_PRESENT, in entry order.
 */
import { link, copyFile, cp, lstat, mkdir, open, readFile, readdir, readlink, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { closeSync, existsSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { defineErrors } from '../errors/index.ts';

/** Errors of CRIU image handling. */
export const criuImageErrors = defineErrors({
  CRIU_IMAGE_MALFORMED: { status: 422, message: 'CRIU image {file}: {reason}' },
  CRIU_IMAGE_UNSUPPORTED: { status: 422, message: 'CRIU image {file}: {reason}' },
  INCREMENTAL_OUT_NOT_EMPTY: { status: 409, message: 'incremental image directory {dir} exists and is not empty' },
});

/** Runs of at most this many pages are copied with synchronous I/O in flattenImage. */
const SMALL_RUN_PAGES = 16;
/** Bytes per page in CRIU images (x86-64, arm64 with 4 KiB pages). */
export const PAGE_SIZE = 4096;
/** Pagemap flag: the pages are in the parent image (criu/include/pagemap.h). */
export const PE_PARENT = 1;
/** Pagemap flag: the pages may be restored lazily (set on anonymous private memory even in plain dumps). */
export const PE_LAZY = 2;
/** Pagemap flag: the pages' bytes are in this image's pages file. */
export const PE_PRESENT = 4;
/** First word of every image written with img_common_magic. */
export const IMG_COMMON_MAGIC = 0x54564319;
/** First word of service images (stats, irmap cache) written with img_common_magic. */
export const IMG_SERVICE_MAGIC = 0x55105940;
/** Second word of a pagemap image. */
export const PAGEMAP_MAGIC = 0x56084025;

/** The first message of a pagemap image. */
export interface PagemapHead {
  /** N in the pages-N.img file that holds this pagemap's present pages. */
  readonly pagesId: number;
}

/** One run of pages. */
export interface PagemapEntry {
  /** Address of the first page (a uint64; user addresses can exceed 2^53 with 5-level paging). */
  readonly vaddr: bigint;
  /** Number of pages in the run. */
  readonly nrPages: number;
  /** PE_* bits; images without a flags field get CRIU's compatibility reading (in_parent → PE_PARENT, else PE_PRESENT). */
  readonly flags: number;
}

/** A decoded pagemap image. */
export interface Pagemap {
  /** Magic words as read, written back unchanged. */
  readonly magic: readonly number[];
  readonly head: PagemapHead;
  readonly entries: readonly PagemapEntry[];
  /** Numbers of fields this codec does not know that were skipped while decoding (not kept). */
  readonly skippedFields: readonly number[];
}

const malformed = (file: string, reason: string) => criuImageErrors.CRIU_IMAGE_MALFORMED({ file, reason });

/** Reads protobuf fields of one message; rejects wire types a pagemap never uses. */
class FieldReader {
  private pos: number;
  constructor(private readonly buf: Buffer, start: number, private readonly end: number, private readonly file: string) {
    this.pos = start;
  }

  /** Next field as [number, value], or undefined at the end; varints come back as bigint, other known wire types are skipped. */
  next(): [number, bigint | undefined] | undefined {
    if (this.pos >= this.end) return undefined;
    const at = this.pos;
    const key = Number(this.varint());
    const field = key >>> 3;
    const wire = key & 7;
    if (wire === 0) return [field, this.varint()];
    const skip = wire === 1 ? 8 : wire === 5 ? 4 : wire === 2 ? Number(this.varint()) : -1;
    if (skip < 0) throw criuImageErrors.CRIU_IMAGE_UNSUPPORTED({ file: this.file, reason: `unsupported protobuf wire type ${wire} (field ${field}) at offset ${at}` });
    this.pos += skip;
    if (this.pos > this.end) throw malformed(this.file, `field ${field} at offset ${at} runs past its message`);
    return [field, undefined];
  }

  private varint(): bigint {
    // The first 7 bytes (49 bits) in plain numbers (see shortVarint), the rest (up to 10 bytes, 64
    // bits) in BigInt.
    const short = shortVarint(this.buf, this.pos, this.end);
    if (short.next < 0) throw malformed(this.file, `truncated varint at offset ${this.end}`);
    if (short.next > 0) {
      this.pos = short.next;
      return BigInt(short.value);
    }
    this.pos += 7;
    let v = BigInt(short.value);
    for (let shift = 49n; shift < 70n; shift += 7n) {
      if (this.pos >= this.end) throw malformed(this.file, `truncated varint at offset ${this.pos}`);
      const b = this.buf[this.pos++]!;
      v |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return v;
    }
    throw malformed(this.file, `varint longer than 10 bytes at offset ${this.pos}`);
  }
}

/**
 * A varint of at most 7 bytes (49 bits: every address, count and flag word of a pagemap) at `pos`,
 * in plain numbers — BigInt arithmetic per byte made decoding a 2,600-entry pagemap take 5–20 ms.
 * `next` is the position after it; 0 when it is longer (`value` then holds its first 7 bytes), -1 when
 * `end` comes first.
 */
function shortVarint(buf: Buffer, pos: number, end: number): { value: number; next: number } {
  let value = 0;
  for (let i = 0, mul = 1; i < 7; i++, mul *= 128) {
    if (pos >= end) return { value, next: -1 };
    const b = buf[pos++]!;
    value += (b & 0x7f) * mul;
    if (b < 0x80) return { value, next: pos };
  }
  return { value, next: 0 };
}

function toNumber(v: bigint, max: number, what: string, file: string): number {
  if (v > BigInt(max)) throw malformed(file, `${what} ${v} does not fit`);
  return Number(v);
}

/**
 * decodePagemap's common case, in plain numbers: the head's field 1 and an entry's fields 1–5, each
 * a varint of at most 7 bytes (every address, count and flag word CRIU writes). Undefined for anything
 * else — the general decoder then reads the image and says what is wrong with it. Generic decoding
 * (a Map and BigInts per entry) took 4–15 ms for a pagemap of 3,000–4,000 entries, inside a freeze.
 */
function decodeCommon(buf: Buffer, start: number): { head: PagemapHead; entries: PagemapEntry[] } | undefined {
  let head: PagemapHead | undefined;
  const entries: PagemapEntry[] = [];
  for (let pos = start; pos < buf.length;) {
    if (pos + 4 > buf.length) return undefined;
    const end = pos + 4 + buf.readUInt32LE(pos);
    if (end > buf.length) return undefined;
    // Field values by number (1–5); -1 when absent.
    let [f1, f2, f3, f4, f5] = [-1, -1, -1, -1, -1];
    for (let p = pos + 4; p < end;) {
      const key = buf[p++]!;
      if (key >= 0x80 || (key & 7) !== 0) return undefined; // a field past 15, or not a varint
      const { value: n, next } = shortVarint(buf, p, end);
      if (next <= 0) return undefined;
      p = next;
      switch (key >>> 3) {
        case 1: f1 = n; break;
        case 2: f2 = n; break;
        case 3: f3 = n; break;
        case 4: f4 = n; break;
        case 5: f5 = n; break;
        default: return undefined;
      }
    }
    pos = end;
    if (!head) {
      if (f1 < 0 || f1 > 0xffffffff || f2 + f3 + f4 + f5 !== -4) return undefined;
      head = { pagesId: f1 };
      continue;
    }
    const count = f5 >= 0 ? f5 : f2;
    if (f1 < 0 || count < 0 || f4 > 0xffffffff) return undefined;
    const flags = f4 >= 0 ? f4 : 0;
    entries.push({ vaddr: BigInt(f1), nrPages: count, flags: f3 > 0 ? flags | PE_PARENT : f4 >= 0 ? flags : PE_PRESENT });
  }
  return head ? { head, entries } : undefined;
}

/** Decodes a pagemap image's bytes; `file` only names it in errors. */
export function decodePagemap(buf: Buffer, file = 'pagemap'): Pagemap {
  if (buf.length < 4) throw malformed(file, 'shorter than its magic');
  const first = buf.readUInt32LE(0);
  const magicWords = first === IMG_COMMON_MAGIC || first === IMG_SERVICE_MAGIC ? 2 : 1;
  if (buf.length < 4 * magicWords) throw malformed(file, 'shorter than its magic');
  const magic = Array.from({ length: magicWords }, (_, i) => buf.readUInt32LE(4 * i));
  const fast = decodeCommon(buf, 4 * magicWords);
  if (fast) return { magic, ...fast, skippedFields: [] };
  const skipped = new Set<number>();
  const messages: Map<number, bigint>[] = [];
  for (let pos = 4 * magicWords; pos < buf.length;) {
    if (pos + 4 > buf.length) throw malformed(file, `truncated length prefix at offset ${pos}`);
    const end = pos + 4 + buf.readUInt32LE(pos);
    if (end > buf.length) throw malformed(file, `message at offset ${pos} runs past the end of the file`);
    const fields = new Map<number, bigint>();
    const reader = new FieldReader(buf, pos + 4, end, file);
    for (let f = reader.next(); f; f = reader.next()) {
      const known = messages.length === 0 ? f[0] === 1 : f[0] >= 1 && f[0] <= 5;
      if (known && f[1] !== undefined) fields.set(f[0], f[1]);
      else skipped.add(f[0]);
    }
    messages.push(fields);
    pos = end;
  }
  const [headFields, ...entryFields] = messages;
  if (headFields?.get(1) === undefined) throw malformed(file, 'no pagemap_head with pages_id');
  const head = { pagesId: toNumber(headFields.get(1)!, 0xffffffff, 'pages_id', file) };
  const entries = entryFields.map((f, i): PagemapEntry => {
    const vaddr = f.get(1);
    const count = f.get(5) ?? f.get(2);
    if (vaddr === undefined || count === undefined) throw malformed(file, `entry ${i} lacks vaddr or nr_pages`);
    const flags = f.has(4) ? toNumber(f.get(4)!, 0xffffffff, 'flags', file) : 0;
    return { vaddr, nrPages: toNumber(count, Number.MAX_SAFE_INTEGER, 'nr_pages', file), flags: (f.get(3) ?? 0n) !== 0n ? flags | PE_PARENT : f.has(4) ? flags : PE_PRESENT };
  });
  return { magic, head, entries, skippedFields: [...skipped].sort((a, b) => a - b) };
}

function pushVarint(out: number[], v: bigint | number): void {
  // Plain numbers while exact (see the decoder's varint), BigInt only above 2^53.
  if (typeof v === 'bigint' && v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= 0n) v = Number(v);
  if (typeof v === 'number') {
    let x = v;
    while (x >= 0x80) {
      out.push((x % 0x80) | 0x80);
      x = Math.floor(x / 0x80);
    }
    out.push(x);
    return;
  }
  let x = v;
  while (x >= 0x80n) {
    out.push(Number(x & 0x7fn) | 0x80);
    x >>= 7n;
  }
  out.push(Number(x));
}

function pushMessage(out: number[], body: number[]): void {
  const n = body.length;
  out.push(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24, ...body);
}

/** The default magic of a pagemap image written by CRIU 4.x. */
export const PAGEMAP_IMAGE_MAGIC: readonly number[] = [IMG_COMMON_MAGIC, PAGEMAP_MAGIC];

/** Encodes a pagemap image the way CRIU 4.2 writes it (compat_nr_pages 0, flags and nr_pages always present). */
export function encodePagemap(head: PagemapHead, entries: readonly PagemapEntry[], magic: readonly number[] = PAGEMAP_IMAGE_MAGIC): Buffer {
  const out: number[] = [];
  const headBody: number[] = [0x08];
  pushVarint(headBody, head.pagesId);
  pushMessage(out, headBody);
  for (const e of entries) {
    const body: number[] = [0x08];
    pushVarint(body, e.vaddr);
    body.push(0x10, 0x00, 0x20);
    pushVarint(body, e.flags);
    body.push(0x28);
    pushVarint(body, e.nrPages);
    pushMessage(out, body);
  }
  const buf = Buffer.alloc(4 * magic.length + out.length);
  magic.forEach((m, i) => buf.writeUInt32LE(m, 4 * i));
  buf.set(out, 4 * magic.length);
  return buf;
}

/** The only word before an inventory image's message (CRIU writes no common magic there). */
export const INVENTORY_MAGIC = 0x58313116;
/** The image version CRIU 4.x writes (InventoryEntry.img_version). */
const CRIU_IMAGES_VERSION = 2;

/**
 * Writes `dir`/inventory.img for a memory-only round image (writeMemoryImage) that a CRIU dump is to
 * name as its parent: CRIU reads the parent's inventory for the time it was taken (dump_uptime, µs
 * since boot) and takes from the parent only pages of processes that began before it (its pid-reuse
 * check); without the file the dump fails. It says "now", after every process of the image began.
 */
export async function writeParentInventory(dir: string): Promise<void> {
  const uptimeUs = Math.floor(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1e6);
  const body: number[] = [0x08];
  pushVarint(body, CRIU_IMAGES_VERSION);
  body.push(0x40); // field 8, dump_uptime
  pushVarint(body, uptimeUs);
  const out: number[] = [];
  pushMessage(out, body);
  const buf = Buffer.alloc(4 + out.length);
  buf.writeUInt32LE(INVENTORY_MAGIC, 0);
  buf.set(out, 4);
  await writeFile(join(dir, 'inventory.img'), buf);
}

/** Reads and decodes one pagemap-*.img. */
export async function readPagemap(file: string): Promise<Pagemap> {
  return decodePagemap(await readFile(file), file);
}

/** Encodes and writes one pagemap-*.img; pass the magic read from the image it derives from. */
export async function writePagemap(file: string, head: PagemapHead, entries: readonly PagemapEntry[], magic: readonly number[] = PAGEMAP_IMAGE_MAGIC): Promise<void> {
  await writeFile(file, encodePagemap(head, entries, magic));
}

/** Pages whose bytes sit in the pages file. */
const hasBytes = (e: PagemapEntry): boolean => (e.flags & PE_PRESENT) !== 0;

/** Checks Σ present pages × 4 KiB = pages file size, the one invariant CRIU's reader relies on. */
async function checkPagesFile(pm: Pagemap, pagemapFile: string, pagesFile: string): Promise<void> {
  const want = pm.entries.reduce((n, e) => n + (hasBytes(e) ? e.nrPages : 0), 0) * PAGE_SIZE;
  const size = await stat(pagesFile).then((s) => s.size, () => -1);
  if (size !== want) throw malformed(pagesFile, `is ${size < 0 ? 'missing' : `${size} bytes`}, but ${pagemapFile} lists ${want / PAGE_SIZE} present pages (${want} bytes)`);
}

/** Refuses a pagemap with fields this reader skipped: rewriting it would drop them. */
function checkKnownFields(pm: Pagemap, file: string): void {
  if (pm.skippedFields.length > 0) throw criuImageErrors.CRIU_IMAGE_UNSUPPORTED({ file, reason: `unknown pagemap fields ${pm.skippedFields.join(', ')} (compressed or newer image?)` });
}

/** A run of pages as page numbers (vaddr / 4 KiB fits a double exactly) with its offset in the pages file. */
interface Run { readonly first: number; readonly count: number; readonly flags: number; readonly offset: number }

function runsOf(pm: Pagemap, file: string): Run[] {
  let offset = 0;
  return pm.entries.map((e) => {
    if (e.vaddr % BigInt(PAGE_SIZE) !== 0n) throw malformed(file, `vaddr 0x${e.vaddr.toString(16)} is not page-aligned`);
    const run = { first: Number(e.vaddr / BigInt(PAGE_SIZE)), count: e.nrPages, flags: e.flags, offset };
    if (hasBytes(e)) offset += e.nrPages * PAGE_SIZE;
    return run;
  });
}

/** Longest chain of `parent` links followed on the source before giving up on a page (it is then sent). */
const MAX_PARENT_DEPTH = 64;

/** Page contents of one pagemap in an image directory, following that directory's own `parent` chain. */
class PageSource {
  private parent: PageSource | undefined | null = null;
  private constructor(private readonly dir: string, private readonly name: string, private readonly runs: Run[], private readonly pages: FileHandle, private readonly depth: number, readonly pagesFile: string) {}

  /** This image's runs when it holds every page it knows itself (no PE_PARENT entries), else undefined. */
  flatRuns(): readonly Run[] | undefined {
    return this.runs.some((r) => r.flags & PE_PARENT) ? undefined : this.runs;
  }

  /** Opens `dir/name` and its pages file, or undefined when the pagemap is not there. */
  static async open(dir: string, name: string, depth = 0): Promise<PageSource | undefined> {
    const file = join(dir, name);
    const pm = await readPagemap(file).catch((e: NodeJS.ErrnoException) => { if (e.code === 'ENOENT') return undefined; throw e; });
    if (!pm) return undefined;
    const pagesFile = join(dir, `pages-${pm.head.pagesId}.img`);
    await checkPagesFile(pm, file, pagesFile);
    return new PageSource(dir, name, runsOf(pm, file), await open(pagesFile, 'r'), depth, pagesFile);
  }

  /** Fills `buf` with pages [first, first+count) where known and marks them in `have`; unknown pages stay unmarked. */
  async fill(first: number, count: number, buf: Buffer, have: Uint8Array): Promise<void> {
    const end = first + count;
    for (let i = firstEndingAfter(this.runs, runEnd, first); i < this.runs.length && this.runs[i]!.first < end; i++) {
      const r = this.runs[i]!;
      const s = Math.max(first, r.first);
      const e = Math.min(end, r.first + r.count);
      if (s >= e) continue;
      const at = (s - first) * PAGE_SIZE;
      if (r.flags & PE_PRESENT) {
        const len = (e - s) * PAGE_SIZE;
        // A few pages are read at once (a thread-pool round trip costs more than the read; see flattenPagemap).
        const bytesRead = e - s <= SMALL_RUN_PAGES
          ? readSync(this.pages.fd, buf, at, len, r.offset + (s - r.first) * PAGE_SIZE)
          : (await this.pages.read(buf, at, len, r.offset + (s - r.first) * PAGE_SIZE)).bytesRead;
        if (bytesRead !== len) throw malformed(join(this.dir, this.name), `pages file ended early at page 0x${s.toString(16)}`);
        have.fill(1, s - first, e - first);
      } else if (r.flags & PE_PARENT) {
        await (await this.parentSource())?.fill(s, e - s, buf.subarray(at), have.subarray(s - first));
      }
    }
  }

  private async parentSource(): Promise<PageSource | undefined> {
    if (this.parent === null) {
      const link = join(this.dir, 'parent');
      const usable = this.depth < MAX_PARENT_DEPTH && (await lstat(link).then(() => true, () => false));
      this.parent = usable ? await PageSource.open(link, this.name, this.depth + 1) : undefined;
    }
    return this.parent;
  }

  async close(): Promise<void> {
    await this.parent?.close();
    await this.pages.close();
  }
}

/** What makeIncremental is given. */
export interface IncrementalRequest {
  /**
   * The round the target already holds, as a directory on the source whose page *content* equals what
   * the target restores from `parentLink`: keep each round's full dump on the source (or an
   * incremental whose own `parent` chain resolves here). Pages whose earlier content cannot be found
   * are sent, never assumed.
   */
  readonly previous: string;
  /** This round: a plain CRIU dump (no PE_PARENT entries) of the same process tree. */
  readonly current: string;
  /** Directory to write; created, or must be empty. */
  readonly out: string;
  /** Target of the relative `parent` symlink as the target lays rounds out, e.g. `../round-1`. */
  readonly parentLink: string;
  /** Compare in JS even when the native helper is built (tests compare the two). */
  readonly jsOnly?: boolean;
  /** Called after each chunk of pages. */
  readonly onProgress?: (p: { readonly pagesDone: number; readonly pagesTotal: number }) => void;
}

/** What makeIncremental wrote. */
export interface IncrementalStats {
  /** Present pages in `current`. */
  readonly pagesTotal: number;
  /** Pages whose content differs from `previous` (or had none there): they are in the new pages files. */
  readonly pagesChanged: number;
  /** Bytes of the new pages files. */
  readonly pageBytesWritten: number;
  /** Bytes of every file in `out`, i.e. what has to travel to the target. */
  readonly bytesWritten: number;
}

/** Pages compared per read: 8 MiB keeps reads large and memory bounded. */
const CHUNK_PAGES = 2048;

/** Appends a run to `entries`, merging with the last one when contiguous and of the same flags. */
function appendRun(entries: PagemapEntry[], first: number, count: number, flags: number, entryStart: number): void {
  const last = entries[entries.length - 1];
  const lastFirst = last ? Number(last.vaddr / BigInt(PAGE_SIZE)) : -1;
  if (last && last.flags === flags && lastFirst >= entryStart && lastFirst + last.nrPages === first) {
    entries[entries.length - 1] = { ...last, nrPages: last.nrPages + count };
  } else {
    entries.push({ vaddr: BigInt(first) * BigInt(PAGE_SIZE), nrPages: count, flags });
  }
}

/** Sets same[j] = 1 for each of the first n pages whose bytes in `cur` equal those known (`have`) in `prev`. */
function markSame(cur: Buffer, prev: Buffer, have: Uint8Array, same: Uint8Array, n: number): void {
  const len = n * PAGE_SIZE;
  const all = have.subarray(0, n).every((h) => h === 1) && cur.compare(prev, 0, len, 0, len) === 0;
  for (let j = 0, at = 0; j < n; j++, at += PAGE_SIZE) {
    same[j] = all || (have[j] === 1 && cur.compare(prev, at, at + PAGE_SIZE, at, at + PAGE_SIZE) === 0) ? 1 : 0;
  }
}

/** The native page comparer scripts/setup builds (native/pagediff); the comparison runs in JS without it. */
export const PAGEDIFF_PATH = fileURLToPath(new URL('../../build/ferry-pagediff', import.meta.url));

/**
 * For every present page of `cur` (runs of a plain dump, in pages-file order), whether `prev` (a flat
 * image) holds the same 4 KiB at the same address: 1 same, 0 changed or unknown; indexed by the
 * page's place in cur's pages file. Runs ferry-pagediff, which maps both files instead of reading
 * them into buffers (1 GiB: ≈ 0.7 s of reads and compares in JS). Undefined when it is not built.
 */
async function sameByNative(cur: readonly Run[], curFile: string, prev: readonly Run[], prevFile: string, helper = PAGEDIFF_PATH): Promise<Uint8Array | undefined> {
  if (!existsSync(helper)) return undefined;
  const triples: bigint[] = [];
  const prevRuns = prev.filter((r) => r.flags & PE_PRESENT);
  let j = 0;
  for (const r of cur) {
    if (!(r.flags & PE_PRESENT)) continue;
    const end = r.first + r.count;
    while (j < prevRuns.length && prevRuns[j]!.first + prevRuns[j]!.count <= r.first) j++;
    for (let k = j; k < prevRuns.length && prevRuns[k]!.first < end; k++) {
      const q = prevRuns[k]!;
      const [s, e] = [Math.max(r.first, q.first), Math.min(end, q.first + q.count)];
      if (s < e) triples.push(BigInt(r.offset / PAGE_SIZE + s - r.first), BigInt(q.offset / PAGE_SIZE + s - q.first), BigInt(e - s));
    }
  }
  const input = Buffer.from(BigUint64Array.from(triples).buffer);
  const out = await new Promise<Buffer>((resolve, reject) => {
    const child = spawn(helper, [curFile, prevFile], { stdio: ['pipe', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (b: Buffer) => chunks.push(b));
    child.stderr.on('data', (b: Buffer) => { err += b.toString(); });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(chunks)) : reject(new Error(`ferry-pagediff exited ${code}: ${err.trim()}`))));
    child.stdin.end(input);
  });
  const curPages = cur.reduce((n, r) => n + (r.flags & PE_PRESENT ? r.count : 0), 0);
  const same = new Uint8Array(curPages);
  let k = 0;
  for (let i = 0; i < triples.length; i += 3) {
    const [at, count] = [Number(triples[i]!), Number(triples[i + 2]!)];
    same.set(out.subarray(k, k + count), at);
    k += count;
  }
  if (k !== out.length) throw new Error(`ferry-pagediff answered ${out.length} bytes for ${k} pages`);
  return same;
}

/** Rewrites one pagemap of `current` against `previous`; returns [present pages, changed pages]. */
async function rewritePagemap(req: IncrementalRequest, name: string, progress: { done: number; total: number }): Promise<[number, number]> {
  const file = join(req.current, name);
  const pm = await readPagemap(file);
  checkKnownFields(pm, file);
  if (pm.entries.some((e) => e.flags & PE_PARENT)) throw criuImageErrors.CRIU_IMAGE_UNSUPPORTED({ file, reason: 'current is already incremental (PE_PARENT entries); give a plain dump' });
  const pagesFile = join(req.current, `pages-${pm.head.pagesId}.img`);
  await checkPagesFile(pm, file, pagesFile);
  const [curBuf, prevBuf] = [Buffer.allocUnsafe(CHUNK_PAGES * PAGE_SIZE), Buffer.allocUnsafe(CHUNK_PAGES * PAGE_SIZE)];
  const [have, same] = [new Uint8Array(CHUNK_PAGES), new Uint8Array(CHUNK_PAGES)];
  const entries: PagemapEntry[] = [];
  let [total, changed] = [0, 0];
  let prev: PageSource | undefined, cur: FileHandle | undefined, out: FileHandle | undefined;
  try {
    prev = await PageSource.open(req.previous, name);
    cur = await open(pagesFile, 'r');
    out = await open(join(req.out, `pages-${pm.head.pagesId}.img`), 'wx');
    const runs = runsOf(pm, file);
    // A flat previous round (the source keeps each round's full dump) is compared natively when the
    // helper is built: only the changed pages are read here then.
    const prevFlat = prev?.flatRuns();
    const known = prev && prevFlat && !req.jsOnly ? await sameByNative(runs, pagesFile, prevFlat, prev.pagesFile) : undefined;
    for (const r of runs) {
      if (!(r.flags & PE_PRESENT)) {
        appendRun(entries, r.first, r.count, r.flags, r.first);
        continue;
      }
      for (let done = 0; done < r.count; done += CHUNK_PAGES) {
        const n = Math.min(CHUNK_PAGES, r.count - done);
        const at = r.offset + done * PAGE_SIZE;
        if (known) {
          same.set(known.subarray(at / PAGE_SIZE, at / PAGE_SIZE + n));
        } else {
          have.fill(0);
          const [{ bytesRead }] = await Promise.all([cur.read(curBuf, 0, n * PAGE_SIZE, at), prev?.fill(r.first + done, n, prevBuf, have)]);
          if (bytesRead !== n * PAGE_SIZE) throw malformed(pagesFile, 'pages file ended early');
          markSame(curBuf, prevBuf, have, same, n);
        }
        let kept = 0; // changed pages are packed to the front of curBuf, then written at once
        for (let i = 0, j = 1; i < n; i = j, j = i + 1) {
          while (j < n && same[j] === same[i]) j++;
          appendRun(entries, r.first + done + i, j - i, same[i] ? PE_PARENT | (r.flags & PE_LAZY) : r.flags, r.first); // a lazy page stays lazy
          if (same[i]) continue;
          if (known) {
            // Only the changed pages are read (the chunk was not).
            const bytes = (j - i) * PAGE_SIZE;
            if (readSync(cur.fd, curBuf, kept, bytes, at + i * PAGE_SIZE) !== bytes) throw malformed(pagesFile, 'pages file ended early');
          } else {
            curBuf.copyWithin(kept, i * PAGE_SIZE, j * PAGE_SIZE);
          }
          kept += (j - i) * PAGE_SIZE;
        }
        if (kept > 0) await out.write(curBuf, 0, kept);
        changed += kept / PAGE_SIZE;
        total += n;
        progress.done += n;
        req.onProgress?.({ pagesDone: progress.done, pagesTotal: progress.total });
      }
    }
  } finally {
    await Promise.all([out?.close(), cur?.close(), prev?.close()]);
  }
  await writePagemap(join(req.out, name), pm.head, entries, pm.magic);
  return [total, changed];
}

/** The streaming delta writer scripts/setup builds (native/pagediff/ferry-delta-server). */
export const DELTA_SERVER_PATH = fileURLToPath(new URL('../../build/ferry-delta-server', import.meta.url));

/** What startDeltaServer is given: as makeIncremental's, with no `current` (CRIU streams it). */
export interface DeltaServerRequest {
  /** A plain (flat) dump of the round the target holds, kept on the source; none: every page is kept (a plain image). */
  readonly previous?: string;
  /** Directory for the image: created, or must be empty (on the source, CRIU's image directory too). */
  readonly out: string;
  /** Target of the relative `parent` symlink as the target lays rounds out (with `previous`). */
  readonly parentLink?: string;
  /** IPv4 address to listen on (default 127.0.0.1). */
  readonly listen?: string;
  /** Bytes of pages to allocate before CRIU connects (see native/pagediff/ferry-delta-server.c, --pool). */
  readonly poolBytes?: number;
  /** The helper (tests). */
  readonly helper?: string;
}

/** A running ferry-delta-server, waiting for one CRIU dump. */
export interface DeltaServer {
  /** `host:port` to give CRIU (runc checkpoint --page-server). */
  readonly address: string;
  /** Page bytes received so far (reported every 16 MiB or so; a pool's file size does not say it). */
  received(): number;
  /** After the dump returned: waits for the server, writes the pagemaps and `parent`; `out` is then makeIncremental's image. */
  finish(): Promise<IncrementalStats>;
  /** Ends the server (the dump failed); `out` stays for the caller to remove. */
  stop(): Promise<void>;
}

/** Pagemap file name for a page-server type and id (criu/page-xfer.c: 1 = a process, 2 = shared memory). */
const pagemapName = (type: number, id: string): string => (type === 2 ? `pagemap-shmem-${id}.img` : `pagemap-${id}.img`);

/**
 * Starts a CRIU page server that writes, while CRIU dumps into it, the image makeIncremental would
 * write from a full dump of the same memory: pages equal to `previous`'s at the same address become
 * PE_PARENT runs, only the changed ones are kept. The comparison overlaps the dump instead of
 * following it, and the full image is never written. Without `previous` every page is kept: the
 * plain image CRIU's own page server would write (stop-copy's receiver on the target). Undefined when
 * the helper is not built or `previous` is not flat (compare from files then). On the source, CRIU's
 * other images go straight into `out`.
 */
export async function startDeltaServer(req: DeltaServerRequest): Promise<DeltaServer | undefined> {
  const helper = req.helper ?? DELTA_SERVER_PATH;
  if (!existsSync(helper) || /\s/.test(req.previous ?? '')) return undefined;
  let index = '';
  for (const name of req.previous === undefined ? [] : await readdir(req.previous)) {
    const m = /^pagemap-(shmem-)?(\d+)\.img$/.exec(name);
    if (!m) continue;
    const src = await PageSource.open(req.previous!, name);
    try {
      const runs = src?.flatRuns();
      if (!src || !runs) return undefined;
      const present = runs.filter((r) => r.flags & PE_PRESENT);
      index += `map ${m[1] ? 2 : 1} ${m[2]} ${src.pagesFile} ${present.length}\n${present.map((r) => `${r.first} ${r.count} ${r.offset / PAGE_SIZE}\n`).join('')}`;
    } finally {
      await src?.close();
    }
  }
  await mkdir(req.out, { recursive: true });
  if ((await readdir(req.out)).length > 0) throw criuImageErrors.INCREMENTAL_OUT_NOT_EMPTY({ dir: req.out });
  const args = [...(req.listen ? ['--listen', req.listen] : []), ...(req.poolBytes ? ['--pool', String(Math.ceil(req.poolBytes / PAGE_SIZE) * PAGE_SIZE)] : []), req.out];
  const child = spawn(helper, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let [out, err] = ['', ''];
  let received = 0; // page bytes, from its "got" lines
  child.stdout.on('data', (b: Buffer) => {
    const text = b.toString();
    out += text;
    // What just arrived, with the start of a line it may have finished.
    for (const m of out.slice(-(text.length + 32)).matchAll(/^got (\d+)\n/gm)) received = Math.max(received, Number(m[1]));
  });
  child.stderr.on('data', (b: Buffer) => { err += b.toString(); });
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => (code === 0 ? resolve() : reject(new Error(`ferry-delta-server ${signal ? `was killed (${signal})` : `exited ${code}`}: ${err.trim() || 'no message'}`))));
  });
  exited.catch(() => undefined);
  child.stdin.on('error', () => undefined); // an early exit is reported by `exited`
  child.stdin.end(index + 'end\n');
  /** The first match of `re` in what it printed, once it is there. */
  const printed = (re: RegExp): Promise<RegExpExecArray> => new Promise((resolve) => {
    const look = (): void => { const m = re.exec(out); if (m) { child.stdout.off('data', look); resolve(m); } };
    child.stdout.on('data', look);
    look();
  });
  const port = Number((await Promise.race([printed(/^port (\d+)$/m), exited.then(() => { throw new Error('ferry-delta-server exited before listening'); })]))[1]);
  return {
    address: `${req.listen ?? '127.0.0.1'}:${port}`,
    received: () => received,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited.catch(() => undefined);
    },
    async finish() {
      // The summary is the last thing it prints; its exit (unmapping the last round) is not waited for.
      await Promise.race([exited, printed(/^done$/m)]);
      let [pagesTotal, pagesChanged] = [0, 0];
      for (const [, type, id, k, present, changed] of out.matchAll(/^map (\d+) (\d+) (\d+) (\d+) (\d+)$/gm)) {
        const bin = await readFile(join(req.out, `entries-${k}.bin`));
        const entries: PagemapEntry[] = [];
        for (let at = 0; at + 16 <= bin.length; at += 16) entries.push({ vaddr: bin.readBigUInt64LE(at), nrPages: bin.readUInt32LE(at + 8), flags: bin.readUInt32LE(at + 12) });
        const file = join(req.out, pagemapName(Number(type), id!));
        await writePagemap(file, { pagesId: Number(k) }, entries);
        await rm(join(req.out, `entries-${k}.bin`));
        await checkPagesFile({ magic: PAGEMAP_IMAGE_MAGIC, head: { pagesId: Number(k) }, entries, skippedFields: [] }, file, join(req.out, `pages-${k}.img`));
        pagesTotal += Number(present);
        pagesChanged += Number(changed);
      }
      if (!/^done$/m.test(out)) throw new Error(`ferry-delta-server ended without its summary: ${out.trim()}`);
      if (req.parentLink !== undefined) await symlink(req.parentLink, join(req.out, 'parent'));
      return { pagesTotal, pagesChanged, pageBytesWritten: pagesChanged * PAGE_SIZE, bytesWritten: await treeBytes(req.out) };
    },
  };
}

/** Hard-links a file into `out`, copying when linking is not possible (another filesystem). */
async function linkOrCopy(from: string, to: string): Promise<void> {
  await link(from, to).catch(() => copyFile(from, to));
}

/** Puts `names` of `from` into `to` as they are: files hard-linked (or copied), symlinks and directories copied. */
async function linkOthers(from: string, to: string, names: readonly string[]): Promise<void> {
  // All at once: an image has dozens of small files, and two thread-pool round trips each, one file
  // after another, took 3.5–13 ms for 45 files on tmpfs here (1–3 ms at once), inside the freeze.
  await Promise.all(names.map(async (name) => {
    const src = join(from, name);
    const st = await lstat(src);
    if (st.isSymbolicLink()) await symlink(await readlink(src), join(to, name));
    else if (st.isDirectory()) await cp(src, join(to, name), { recursive: true, verbatimSymlinks: true });
    else await linkOrCopy(src, join(to, name));
  }));
}

/**
 * Writes into `out` an image equal to `current` except that every page whose 4 KiB content equals
 * the page at the same address in `previous` becomes a PE_PARENT entry; other files are hard-linked
 * (or copied) unchanged, and `out/parent` → `parentLink` lets CRIU's restore find the rest. On failure
 * `out` is removed.
 */
export async function makeIncremental(req: IncrementalRequest): Promise<IncrementalStats> {
  const progress = { done: 0, total: 0 };
  return rewriteImage(req.current, req.out, req.parentLink, (heads) => {
    progress.total = heads.flatMap((p) => p.entries).reduce((n, e) => n + (hasBytes(e) ? e.nrPages : 0), 0);
    return (name) => rewritePagemap(req, name, progress);
  });
}

/**
 * The skeleton of an incremental image: writes into `out` (created, or must be empty) each pagemap
 * of the image in `from` with its pages file as `begin`'s rewriter does (it returns [pages in the
 * pagemap, pages written]), hard-links (or copies) the other files, and links `parent` to
 * `parentLink`. On failure `out` is removed.
 */
async function rewriteImage(
  from: string, out: string, parentLink: string,
  begin: (heads: Pagemap[]) => (name: string, pm: Pagemap) => Promise<[number, number]>,
): Promise<IncrementalStats> {
  await mkdir(out, { recursive: true });
  if ((await readdir(out)).length > 0) throw criuImageErrors.INCREMENTAL_OUT_NOT_EMPTY({ dir: out });
  try {
    const names = await readdir(from);
    const pagemaps = names.filter((n) => /^pagemap-.*\.img$/.test(n));
    const heads = await Promise.all(pagemaps.map((n) => readPagemap(join(from, n))));
    const pagesFiles = new Set(heads.map((p) => `pages-${p.head.pagesId}.img`));
    const rewrite = begin(heads);
    let [pagesTotal, pagesChanged] = [0, 0];
    for (const [k, name] of pagemaps.entries()) {
      const [t, c] = await rewrite(name, heads[k]!);
      pagesTotal += t;
      pagesChanged += c;
    }
    await linkOthers(from, out, names.filter((n) => n !== 'parent' && !pagemaps.includes(n) && !pagesFiles.has(n)));
    await symlink(parentLink, join(out, 'parent'));
    const bytesWritten = await treeBytes(out);
    return { pagesTotal, pagesChanged, pageBytesWritten: pagesChanged * PAGE_SIZE, bytesWritten };
  } catch (e) {
    await rm(out, { recursive: true, force: true });
    throw e;
  }
}

/** Bytes of the regular files under `dir`, not following symlinks. */
async function treeBytes(dir: string): Promise<number> {
  let n = 0;
  for (const d of await readdir(dir, { withFileTypes: true })) {
    if (d.isDirectory()) n += await treeBytes(join(dir, d.name));
    else if (d.isFile()) n += (await stat(join(dir, d.name))).size;
  }
  return n;
}

/** What flattenImage did. */
export interface FlattenStats {
  /** Pages in the flat image. */
  readonly pages: number;
  /** Pages written: only the image's own (changed) pages when the parent's pages file was taken over. */
  readonly pagesWritten: number;
  /** Whether the parent's pages file was taken over and patched (see flattenImage). */
  readonly patchedParent: boolean;
  /** Why a pagemap could not take its parent's pages file over (the first such), when one could not (with `overlay: 'when-layout-changed'`: why it was overlaid). */
  readonly copiedWhy?: string;
  /** With `overlay`: the image keeps its `parent` link (see flattenImage). */
  readonly overlaid?: boolean;
}

/** Page numbers an image's entries cover, as merged [first, count] ranges (flags ignored). */
function coverage(runs: readonly Run[]): [number, number][] {
  const out: [number, number][] = [];
  for (const r of runs) {
    const last = out[out.length - 1];
    if (last && last[0] + last[1] === r.first) last[1] += r.count;
    else out.push([r.first, r.count]);
  }
  return out;
}

/** Undefined when `a` and `b` cover the same pages, else where they first differ. */
function coverageDiff(a: readonly Run[], b: readonly Run[]): string | undefined {
  const [x, y] = [coverage(a), coverage(b)];
  const hex = (r: [number, number] | undefined): string => (r ? `0x${(r[0] * PAGE_SIZE).toString(16)}+${r[1]}` : 'nothing');
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if (x[i]?.[0] !== y[i]?.[0] || x[i]?.[1] !== y[i]?.[1]) return `its pages ${hex(x[i])} against the parent's ${hex(y[i])} (range ${i + 1} of ${x.length} vs ${y.length})`;
  }
  return undefined;
}

/**
 * Writes into `out` the image in `dir` with every page in its own pages file and no `parent` link:
 * its PE_PARENT runs are resolved through `dir`'s parent chain. CRIU restores a chain run by run,
 * rounds deep (3.5–3.9 s for 1 GiB two pre-copy rounds deep here, 0.8 s for a flat image).
 *
 * With `consumeParent`, a pagemap whose parent is flat and covers exactly the same pages (a process
 * whose memory layout did not change between the dumps, the usual case) takes the parent's pages
 * file over: `dir`'s own pages are written into it at their places and it moves into `out`, so the
 * cost is the changed pages, not the image. The parent is spent afterwards (its pages are the new
 * ones): the caller removes it. Other pagemaps are copied page by page. On failure `out` is removed.
 *
 * With `overlay` (for an image restored at once, whose parent goes with it), nothing is copied even
 * when the memory layout changed: the image's pages that the flat parent covers are written into the
 * parent's pages file at their places and become PE_PARENT runs, the others stay in `out`'s own pages
 * file, and `out/parent` links to the parent. The restore reads a chain one deep whose parent runs are
 * long (not the thousands of scattered runs an incremental image has), and the cost is the image's
 * own pages whatever the layout. CRIU's lazy-pages daemon serves no pages from a parent: restore
 * such an image without --lazy-pages. `'when-layout-changed'`: overlay only when some pagemap cannot
 * take its parent's pages file over, else patch as consumeParent does.
 */
export async function flattenImage(dir: string, out: string, o: { consumeParent?: boolean; overlay?: boolean | 'when-layout-changed' } = {}): Promise<FlattenStats> {
  await mkdir(out, { recursive: true });
  if ((await readdir(out)).length > 0) throw criuImageErrors.INCREMENTAL_OUT_NOT_EMPTY({ dir: out });
  try {
    const names = await readdir(dir);
    const pagemaps = names.filter((n) => /^pagemap-.*\.img$/.test(n));
    const heads = await Promise.all(pagemaps.map((n) => readPagemap(join(dir, n))));
    const pagesFiles = new Set(heads.map((p) => `pages-${p.head.pagesId}.img`));
    let [pages, pagesWritten, patchedParent] = [0, 0, false];
    // Which pagemaps can take their parent's pages file over, read once for the choice and the work.
    const plans = o.consumeParent ? await Promise.all(pagemaps.map((name, i) => patchPlan(dir, name, runsOf(heads[i]!, join(dir, name))))) : undefined;
    const whyIndex = plans?.findIndex((pl) => 'why' in pl) ?? -1;
    const copiedWhy = whyIndex < 0 ? undefined : `${pagemaps[whyIndex]}: ${(plans![whyIndex] as { why: string }).why}`;
    if (o.overlay === true || (o.overlay === 'when-layout-changed' && copiedWhy !== undefined)) {
      const link = await readlink(join(dir, 'parent'));
      for (const [i, name] of pagemaps.entries()) {
        const r = await overlayPagemap(dir, out, name, heads[i]!);
        pages += r.pages;
        pagesWritten += r.written;
        patchedParent ||= r.patched;
      }
      await linkOthers(dir, out, names.filter((n) => n !== 'parent' && !pagemaps.includes(n) && !pagesFiles.has(n)));
      await symlink(link, join(out, 'parent'));
      return { pages, pagesWritten, patchedParent, overlaid: true, ...(o.overlay === 'when-layout-changed' && copiedWhy ? { copiedWhy } : {}) };
    }
    for (const [i, name] of pagemaps.entries()) {
      const r = await flattenPagemap(dir, out, name, heads[i]!, plans?.[i]);
      pages += r.pages;
      pagesWritten += r.written;
      patchedParent ||= r.patched;
    }
    await linkOthers(dir, out, names.filter((n) => n !== 'parent' && !pagemaps.includes(n) && !pagesFiles.has(n)));
    return { pages, pagesWritten, patchedParent, ...(copiedWhy ? { copiedWhy } : {}) };
  } catch (e) {
    await rm(out, { recursive: true, force: true });
    throw e;
  }
}

/** The flat parent pagemap whose pages file an image's pagemap (with `runs`) can take over, or why it cannot. */
type PatchPlan = { readonly parent: Pagemap; readonly parentRuns: readonly Run[] } | { readonly why: string };

/** See PatchPlan: the parent must be flat and cover exactly the same pages, and every run must hold pages. */
async function patchPlan(dir: string, name: string, runs: readonly Run[]): Promise<PatchPlan> {
  if (!runs.every((r) => r.flags & (PE_PRESENT | PE_PARENT))) return { why: 'runs without bytes' };
  const parent = await readPagemap(join(dir, 'parent', name)).catch(() => undefined);
  if (!parent) return { why: 'no usable parent pagemap' };
  const parentRuns = runsOf(parent, join(dir, 'parent', name));
  if (!parentRuns.every((r) => (r.flags & PE_PRESENT) && !(r.flags & PE_PARENT))) return { why: 'the parent is not flat' };
  const why = coverageDiff(runs, parentRuns);
  return why === undefined ? { parent, parentRuns } : { why };
}

/**
 * Copies pages out of `src` (file `srcFile`) through `buf`: `copy(from, dst, dstFile, to, count)`
 * copies `count` pages at byte `from` to byte `to` of `dst`.
 */
function pageCopier(src: FileHandle, srcFile: string, buf: Buffer): { copy(from: number, dst: FileHandle, dstFile: string, to: number, count: number): Promise<void> } {
  let small = 0;
  return {
    async copy(from, dst, dstFile, to, count) {
      for (let done = 0; done < count; done += CHUNK_PAGES) {
        const n = Math.min(CHUNK_PAGES, count - done);
        const [bytes, at, into] = [n * PAGE_SIZE, from + done * PAGE_SIZE, to + done * PAGE_SIZE];
        if (n <= SMALL_RUN_PAGES) {
          // Changed pages come scattered, often one by one (2,610 runs at 1 GiB): a thread-pool
          // round trip each took 0.6 s; a synchronous pread/pwrite of a page is microseconds.
          // The event loop gets a turn every few hundred, for the agent's other work.
          if (readSync(src.fd, buf, 0, bytes, at) !== bytes) throw malformed(srcFile, 'pages file ended early');
          if (writeSync(dst.fd, buf, 0, bytes, into) !== bytes) throw malformed(dstFile, 'short write');
          if (++small % 256 === 0) await new Promise((res) => setImmediate(res));
        } else {
          if ((await src.read(buf, 0, bytes, at)).bytesRead !== bytes) throw malformed(srcFile, 'pages file ended early');
          await dst.write(buf, 0, bytes, into);
        }
      }
    },
  };
}

/** One pagemap of flattenImage: over the parent `plan` names (consumeParent), else copied page by page. */
async function flattenPagemap(dir: string, out: string, name: string, pm: Pagemap, plan: PatchPlan | undefined): Promise<{ pages: number; written: number; patched: boolean }> {
  const file = join(dir, name);
  checkKnownFields(pm, file);
  const pagesFile = join(dir, `pages-${pm.head.pagesId}.img`);
  await checkPagesFile(pm, file, pagesFile);
  const runs = runsOf(pm, file);
  const outPages = join(out, `pages-${pm.head.pagesId}.img`);
  const total = runs.reduce((n, r) => n + (r.flags & (PE_PRESENT | PE_PARENT) ? r.count : 0), 0);
  const buf = Buffer.allocUnsafe(CHUNK_PAGES * PAGE_SIZE);

  // Fast path: a flat parent with the same pages, whose pages file becomes this one.
  const parentDir = join(dir, 'parent');
  if (plan && 'parent' in plan) {
    const { parent } = plan;
    const parentPages = join(parentDir, `pages-${parent.head.pagesId}.img`);
    await checkPagesFile(parent, join(parentDir, name), parentPages);
    let written = 0;
    const [src, dst] = [await open(pagesFile, 'r'), await open(parentPages, 'r+')];
    try {
      const copier = pageCopier(src, pagesFile, buf);
      let index = 0; // the run's first page's place in the (shared) page order
      for (const r of runs) {
        if (r.flags & PE_PRESENT) {
          await copier.copy(r.offset, dst, parentPages, index * PAGE_SIZE, r.count);
          written += r.count;
        }
        index += r.count;
      }
    } finally {
      await Promise.all([src.close(), dst.close()]);
    }
    await rename(parentPages, outPages);
    // The same pages in the same order: the image's own runs, all present, lazy where the image says
    // (a parent written from memory has no lazy flags; the restore needs them).
    const entries: PagemapEntry[] = [];
    for (const r of runs) appendRun(entries, r.first, r.count, PE_PRESENT | (r.flags & PE_LAZY), 0);
    await writePagemap(join(out, name), pm.head, entries, pm.magic);
    return { pages: total, written, patched: true };
  }

  const entries: PagemapEntry[] = [];
  const have = new Uint8Array(CHUNK_PAGES);
  let source: PageSource | undefined, dst: FileHandle | undefined;
  try {
    source = await PageSource.open(dir, name);
    dst = await open(outPages, 'wx');
    for (const r of runs) {
      appendRun(entries, r.first, r.count, r.flags & (PE_PRESENT | PE_PARENT) ? PE_PRESENT | (r.flags & PE_LAZY) : r.flags, r.first);
    }
    // The bytes go in address order, a contiguous stretch at a time whatever its runs (an image
    // with scattered changed pages has thousands of runs; windows that span them keep reads big).
    for (const [first, count] of coverage(runs.filter((r) => r.flags & (PE_PRESENT | PE_PARENT)))) {
      for (let done = 0; done < count; done += CHUNK_PAGES) {
        const n = Math.min(CHUNK_PAGES, count - done);
        have.fill(0);
        await source!.fill(first + done, n, buf, have);
        const missing = have.subarray(0, n).indexOf(0);
        if (missing >= 0) throw malformed(file, `page 0x${(first + done + missing).toString(16)} is in no image of its parent chain`);
        await dst.write(buf, 0, n * PAGE_SIZE);
      }
    }
  } finally {
    await Promise.all([dst?.close(), source?.close()]);
  }
  await writePagemap(join(out, name), pm.head, entries, pm.magic);
  return { pages: total, written: total, patched: false };
}

/** flattenImage's overlay: one pagemap of `dir` over its flat parent (see flattenImage). */
async function overlayPagemap(dir: string, out: string, name: string, pm: Pagemap): Promise<{ pages: number; written: number; patched: boolean }> {
  const file = join(dir, name);
  checkKnownFields(pm, file);
  const pagesFile = join(dir, `pages-${pm.head.pagesId}.img`);
  await checkPagesFile(pm, file, pagesFile);
  const runs = runsOf(pm, file);
  const parentDir = join(dir, 'parent');
  const parent = await readPagemap(join(parentDir, name)).catch((e: NodeJS.ErrnoException) => { if (e.code === 'ENOENT') return undefined; throw e; });
  const parentRuns = parent ? runsOf(parent, join(parentDir, name)) : [];
  if (parentRuns.some((r) => !(r.flags & PE_PRESENT) || (r.flags & PE_PARENT))) throw criuImageErrors.CRIU_IMAGE_UNSUPPORTED({ file: join(parentDir, name), reason: 'the parent is not flat' });
  const parentPages = parent ? join(parentDir, `pages-${parent.head.pagesId}.img`) : undefined;
  if (parent) await checkPagesFile(parent, join(parentDir, name), parentPages!);
  const entries: PagemapEntry[] = [];
  const buf = Buffer.allocUnsafe(CHUNK_PAGES * PAGE_SIZE);
  let [total, written, own] = [0, 0, 0];
  const ownPages = join(out, `pages-${pm.head.pagesId}.img`);
  const [src, dst, mine] = [await open(pagesFile, 'r'), parentPages ? await open(parentPages, 'r+') : undefined, await open(ownPages, 'wx')];
  try {
    const copier = pageCopier(src, pagesFile, buf);
    for (const r of runs) {
      if (!(r.flags & (PE_PRESENT | PE_PARENT))) {
        appendRun(entries, r.first, r.count, r.flags, r.first);
        continue;
      }
      total += r.count;
      // Walk the run against the parent's runs: covered stretches go into (or are already in) the parent.
      const end = r.first + r.count;
      let lo = firstEndingAfter(parentRuns, runEnd, r.first);
      for (let p = r.first; p < end;) {
        const q = parentRuns[lo];
        const inside = q !== undefined && q.first <= p;
        const stop = inside ? Math.min(end, q.first + q.count) : Math.min(end, q ? q.first : end);
        const n = stop - p;
        if (inside) {
          if (r.flags & PE_PRESENT) {
            await copier.copy(r.offset + (p - r.first) * PAGE_SIZE, dst!, parentPages!, q.offset + (p - q.first) * PAGE_SIZE, n);
            written += n;
          }
          // Long parent runs, across the image's own entries; a lazy run stays lazy (the restore skips it and
          // the lazy-pages daemon serves it), as the image says: a flat parent written from memory has no such flags.
          appendRun(entries, p, n, PE_PARENT | (r.flags & PE_LAZY), 0);
        } else {
          if (!(r.flags & PE_PRESENT)) throw malformed(file, `page 0x${(p * PAGE_SIZE).toString(16)} is in no image of its parent chain`);
          await copier.copy(r.offset + (p - r.first) * PAGE_SIZE, mine, ownPages, own * PAGE_SIZE, n);
          own += n;
          written += n;
          appendRun(entries, p, n, PE_PRESENT | (r.flags & PE_LAZY), r.first);
        }
        p = stop;
        if (inside && stop === q.first + q.count) lo++;
      }
    }
  } finally {
    await Promise.all([src.close(), dst?.close(), mine.close()]);
  }
  await writePagemap(join(out, name), pm.head, entries, pm.magic);
  return { pages: total, written, patched: parent !== undefined };
}

/** Pages of one process written since the round the target holds began, and a way to read them now. */
export interface ChangedPages {
  /** Sorted, non-overlapping [firstPage, endPage) page numbers (vaddr / 4 KiB). */
  readonly ranges: readonly (readonly [number, number])[];
  /** Copies pages [first, first + count) as they are now into `buf` from offset 0. */
  read(first: number, count: number, buf: Buffer): void;
}

/** What makeTrackedIncremental is given. */
export interface TrackedIncrementalRequest {
  /**
   * A lazy dump (`--lazy-pages`) of the frozen process tree: its anonymous pages are PE_LAZY entries
   * without bytes (a PE_PARENT entry CRIU may make for [vdso] stays as it is). An incremental dump
   * that left the unchanged pages out itself goes through markUnchangedLazy instead.
   */
  readonly dump: string;
  /** The plain dump of the round the target holds (kept on the source), taken after the tracker's scan that began it. */
  readonly previous: string;
  /** Directory to write; created, or must be empty. */
  readonly out: string;
  /** Target of the relative `parent` symlink as the target lays rounds out. */
  readonly parentLink: string;
  /** Written pages by pagemap id (the process's pid in the container's namespace). */
  readonly changed: ReadonlyMap<string, ChangedPages>;
}

/** Index of the first of sorted, non-overlapping `items` that ends after page `p` (`end` gives an item's end page). */
function firstEndingAfter<T>(items: readonly T[], end: (item: T) => number, p: number): number {
  let lo = 0;
  for (let hi = items.length; lo < hi;) {
    const mid = (lo + hi) >>> 1;
    if (end(items[mid]!) <= p) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** A run's end page. */
const runEnd = (r: Run): number => r.first + r.count;

/** The first page of [first, end) not in a PE_PRESENT run of the sorted, flat `runs`; undefined when all are. */
function firstAbsent(runs: readonly Run[], first: number, end: number): number | undefined {
  for (let p = first, i = firstEndingAfter(runs, runEnd, first); p < end; i++) {
    const r = runs[i];
    if (!r || r.first > p || !(r.flags & PE_PRESENT)) return p;
    p = r.first + r.count;
  }
  return undefined;
}

/**
 * The final round of a pre-copy migration when a write tracker (dirty-track.ts) says which pages
 * changed: writes into `out` the image of `dump` in which every lazy page written since `previous`
 * began is present (read from the frozen process now) and every other one is a PE_PARENT entry, which
 * `previous` must hold; pages the dump holds itself are copied, and its own PE_PARENT entries stay.
 * So the freeze reads the written pages only, not all of memory. A page that
 * is neither written nor in `previous`, or a process the tracker did not follow, fails the call (and
 * `out` is removed): nothing is ever assumed.
 */
export async function makeTrackedIncremental(req: TrackedIncrementalRequest): Promise<IncrementalStats> {
  const buf = Buffer.allocUnsafe(CHUNK_PAGES * PAGE_SIZE);
  return rewriteImage(req.dump, req.out, req.parentLink, () => async (name, pm) => {
    let [pagesTotal, pagesChanged] = [0, 0];
    const file = join(req.dump, name);
    checkKnownFields(pm, file);
    const pagesFile = join(req.dump, `pages-${pm.head.pagesId}.img`);
    await checkPagesFile(pm, file, pagesFile);
    const runs = runsOf(pm, file);
    const lazy = runs.some((r) => (r.flags & PE_LAZY) && !(r.flags & PE_PRESENT));
    const id = /^pagemap-(\d+)\.img$/.exec(name)?.[1];
    const changed = id === undefined ? undefined : req.changed.get(id);
    if (lazy && !changed) throw criuImageErrors.CRIU_IMAGE_UNSUPPORTED({ file, reason: 'its lazy pages belong to a process whose writes were not tracked' });
    const holes = runs.some((r) => r.flags & PE_PARENT);
    const prevRuns = lazy || holes ? await previousRuns(req.previous, name) : undefined;
    const entries: PagemapEntry[] = [];
    const outFile = join(req.out, `pages-${pm.head.pagesId}.img`);
    const [src, dst] = [await open(pagesFile, 'r'), await open(outFile, 'wx')];
    try {
      // Pages gather in `buf` and go out a chunk at a time (written pages come one or two at a time).
      let used = 0;
      const flush = (): void => {
        if (used > 0 && writeSync(dst.fd, buf, 0, used * PAGE_SIZE) !== used * PAGE_SIZE) throw malformed(outFile, 'short write');
        used = 0;
      };
      /** Appends pages [first, first + n) to the output; `fill` puts `count` pages from `first` into the buffer it is given. */
      const copy = (first: number, n: number, flags: number, fill: (first: number, count: number, into: Buffer) => void): void => {
        for (let done = 0; done < n;) {
          if (used === CHUNK_PAGES) flush();
          const c = Math.min(CHUNK_PAGES - used, n - done);
          fill(first + done, c, buf.subarray(used * PAGE_SIZE, (used + c) * PAGE_SIZE));
          used += c;
          done += c;
        }
        appendRun(entries, first, n, flags, first);
        pagesChanged += n;
      };
      for (const r of runs) {
        if (r.flags & PE_PARENT) {
          // Left to the parent by the dump itself ([vdso]).
          checkHeldByPrevious(prevRuns!, r, file);
          appendRun(entries, r.first, r.count, r.flags, r.first);
          pagesTotal += r.count;
          continue;
        }
        if (r.flags & PE_PRESENT) {
          copy(r.first, r.count, r.flags, (first, count, into) => {
            const bytes = count * PAGE_SIZE;
            if (readSync(src.fd, into, 0, bytes, r.offset + (first - r.first) * PAGE_SIZE) !== bytes) throw malformed(pagesFile, 'pages file ended early');
          });
          pagesTotal += r.count;
          continue;
        }
        if (!(r.flags & PE_LAZY)) {
          appendRun(entries, r.first, r.count, r.flags, r.first);
          continue;
        }
        // A lazy run: written stretches are read now, the rest comes from the previous round.
        const end = r.first + r.count;
        const ranges = changed!.ranges;
        for (let p = r.first, i = firstEndingAfter(ranges, (w) => w[1], r.first); p < end;) {
          const w = ranges[i];
          if (w && w[0] <= p) {
            const stop = Math.min(end, w[1]);
            copy(p, stop - p, PE_PRESENT | PE_LAZY, (first, count, into) => changed!.read(first, count, into));
            p = stop;
            i++;
          } else {
            const stop = Math.min(end, w ? w[0] : end);
            const absent = firstAbsent(prevRuns!, p, stop);
            if (absent !== undefined) throw malformed(file, `page 0x${(absent * PAGE_SIZE).toString(16)} was neither written since the previous round nor in it`);
            appendRun(entries, p, stop - p, PE_PARENT | PE_LAZY, r.first);
            p = stop;
          }
        }
        pagesTotal += r.count;
      }
      flush();
    } finally {
      await Promise.all([src.close(), dst.close()]);
    }
    await writePagemap(join(req.out, name), pm.head, entries, pm.magic);
    return [pagesTotal, pagesChanged];
  });
}

/** The runs of pagemap `name` in `previous`, the flat image of the round the target holds. */
async function previousRuns(previous: string, name: string): Promise<readonly Run[]> {
  const prev = await PageSource.open(previous, name);
  const runs = prev?.flatRuns();
  await prev?.close();
  if (!runs) throw criuImageErrors.CRIU_IMAGE_UNSUPPORTED({ file: join(previous, name), reason: 'the previous round has no flat image of this process' });
  return runs;
}

/** Refuses a PE_PARENT run `r` of dump pagemap `file` that the previous round (`prevRuns`) does not hold whole. */
function checkHeldByPrevious(prevRuns: readonly Run[], r: Run, file: string): void {
  const absent = firstAbsent(prevRuns, r.first, r.first + r.count);
  if (absent !== undefined) throw malformed(file, `page 0x${(absent * PAGE_SIZE).toString(16)} is a PE_PARENT entry of the dump but not in the previous round`);
}

/** What markUnchangedLazy is given. */
export interface UnchangedLazyRequest {
  /** An incremental dump CRIU made over `previous` (--parent-path, the clean-pages shim): rewritten in place. */
  readonly dump: string;
  /** The flat image of the round the target holds: it must hold every page the dump left to it. */
  readonly previous: string;
  /** By pagemap id, the sorted [firstPage, endPage) ranges the write tracker vouched for as unchanged. */
  readonly clean: ReadonlyMap<string, readonly (readonly [number, number])[]>;
}

/**
 * Readies an incremental dump of the tracked pre-copy final round for a lazy restore: the pages it
 * left to its parent because the tracker vouched for them (`clean`) get PE_LAZY, as the parent's own
 * anonymous pages have (CRIU writes its PE_PARENT entries without it, and a flat image made from them
 * would be filled eagerly); other PE_PARENT entries (CRIU makes [vdso] one whatever the bits say)
 * stay as they are. The pages file is CRIU's, untouched: only the written pages are in it. Checks
 * that `previous` holds every page the dump left to its parent.
 */
export async function markUnchangedLazy(req: UnchangedLazyRequest): Promise<IncrementalStats> {
  let [pagesTotal, pagesChanged] = [0, 0];
  for (const name of (await readdir(req.dump)).filter((n) => /^pagemap-.*\.img$/.test(n))) {
    const file = join(req.dump, name);
    const pm = await readPagemap(file);
    checkKnownFields(pm, file);
    const runs = runsOf(pm, file);
    const id = /^pagemap-(\d+)\.img$/.exec(name)?.[1];
    const clean = (id === undefined ? undefined : req.clean.get(id)) ?? [];
    const entries: PagemapEntry[] = [];
    let prevRuns: readonly Run[] | undefined;
    for (const r of runs) {
      if (r.flags & PE_PRESENT) pagesChanged += r.count;
      if (r.flags & (PE_PRESENT | PE_PARENT)) pagesTotal += r.count;
      if (!(r.flags & PE_PARENT)) {
        appendRun(entries, r.first, r.count, r.flags, r.first);
        continue;
      }
      prevRuns ??= await previousRuns(req.previous, name);
      checkHeldByPrevious(prevRuns, r, file);
      const end = r.first + r.count;
      for (let p = r.first, i = firstEndingAfter(clean, (c) => c[1], r.first); p < end;) {
        const c = clean[i];
        const inside = c !== undefined && c[0] <= p;
        const stop = inside ? Math.min(end, c[1]) : Math.min(end, c ? c[0] : end);
        appendRun(entries, p, stop - p, inside ? r.flags | PE_LAZY : r.flags, r.first);
        p = stop;
        if (inside) i++;
      }
    }
    await writePagemap(`${file}.tmp`, pm.head, entries, pm.magic);
    await rename(`${file}.tmp`, file);
  }
  return { pagesTotal, pagesChanged, pageBytesWritten: pagesChanged * PAGE_SIZE, bytesWritten: await treeBytes(req.dump) };
}

/** One process's pages for writeMemoryImage. */
export interface ProcessPages {
  /** Sorted, non-overlapping [firstPage, endPage) page numbers to take now. */
  readonly ranges: readonly (readonly [number, number])[];
  /** Copies pages [first, first + count) as they are now into `buf`; throws for pages it cannot read. */
  read(first: number, count: number, buf: Buffer): void;
}

/** What writeMemoryImage is given. */
export interface MemoryImageRequest {
  /** Directory to write; created, or must be empty. */
  readonly out: string;
  /** Pages to take, by pagemap id (the process's pid in the container's namespace). */
  readonly processes: ReadonlyMap<string, ProcessPages>;
  /**
   * A flat image (every page present) this one adds to: its pages not taken now become PE_PARENT
   * entries, and `out/parent` → `parentLink`. Without it every pagemap holds only what was taken.
   */
  readonly previous?: string;
  readonly parentLink?: string;
}

/** What writeMemoryImage wrote. */
export interface MemoryImageStats extends IncrementalStats {
  /** Pages that could not be read (their mapping went away meanwhile): left out. */
  readonly pagesUnreadable: number;
}

/**
 * A pre-copy round taken from the memory of running processes instead of a CRIU dump (no pause):
 * writes into `out` a pagemap and pages file for each process holding the pages of its `ranges`,
 * read now, over `previous` when given. The image holds memory only (no core, mm or file images):
 * it is a parent for the frozen final round's dump, which brings everything else. A page that cannot
 * be read is left out (a mapping removed since its ranges were found; whatever is mapped there later
 * is new to the write tracker, which reports it). On failure `out` is removed.
 */
export async function writeMemoryImage(req: MemoryImageRequest): Promise<MemoryImageStats> {
  if ((req.previous === undefined) !== (req.parentLink === undefined)) throw new Error('writeMemoryImage: previous and parentLink go together');
  await mkdir(req.out, { recursive: true });
  if ((await readdir(req.out)).length > 0) throw criuImageErrors.INCREMENTAL_OUT_NOT_EMPTY({ dir: req.out });
  const buf = Buffer.allocUnsafe(CHUNK_PAGES * PAGE_SIZE);
  let [pagesTotal, pagesChanged, pagesUnreadable] = [0, 0, 0];
  try {
    for (const [id, proc] of req.processes) {
      if (!/^\d+$/.test(id)) throw new Error(`writeMemoryImage: pagemap id "${id}" is not a number`);
      const name = `pagemap-${id}.img`;
      let base: readonly Run[] = [];
      if (req.previous !== undefined) {
        const prev = await PageSource.open(req.previous, name);
        await prev?.close();
        const flat = prev?.flatRuns();
        if (prev && !flat) throw criuImageErrors.CRIU_IMAGE_UNSUPPORTED({ file: join(req.previous, name), reason: 'the previous round is not flat' });
        base = flat ?? [];
      }
      // Read first: the present runs are what could be read.
      const present: [number, number][] = [];
      const pagesFile = join(req.out, `pages-${id}.img`);
      const fd = openSync(pagesFile, 'wx');
      try {
        let used = 0;
        const flush = (): void => {
          if (used > 0 && writeSync(fd, buf, 0, used * PAGE_SIZE) !== used * PAGE_SIZE) throw malformed(pagesFile, 'short write');
          used = 0;
        };
        const took = (first: number, n: number): void => {
          const last = present[present.length - 1];
          if (last && last[1] === first) last[1] += n;
          else present.push([first, first + n]);
          used += n;
        };
        for (const [s, e] of proc.ranges) {
          for (let p = s; p < e;) {
            if (used === CHUNK_PAGES) flush();
            const n = Math.min(CHUNK_PAGES - used, e - p);
            try {
              proc.read(p, n, buf.subarray(used * PAGE_SIZE, (used + n) * PAGE_SIZE));
              took(p, n);
              // A big round takes a while: the agent's other work gets a turn every chunk.
              if (used === CHUNK_PAGES) await new Promise((res) => setImmediate(res));
            } catch {
              for (let q = p; q < p + n; q++) {
                try {
                  proc.read(q, 1, buf.subarray(used * PAGE_SIZE, (used + 1) * PAGE_SIZE));
                  took(q, 1);
                } catch {
                  pagesUnreadable++;
                }
              }
            }
            p += n;
          }
        }
        flush();
      } finally {
        closeSync(fd);
      }
      const entries = overlayRuns(base, present);
      await writePagemap(join(req.out, name), { pagesId: Number(id) }, entries);
      const taken = present.reduce((n, [s, e]) => n + e - s, 0);
      pagesChanged += taken;
      pagesTotal += entries.reduce((n, e) => n + e.nrPages, 0);
    }
    if (req.parentLink !== undefined) await symlink(req.parentLink, join(req.out, 'parent'));
    return { pagesTotal, pagesChanged, pageBytesWritten: pagesChanged * PAGE_SIZE, bytesWritten: await treeBytes(req.out), pagesUnreadable };
  } catch (e) {
    await rm(req.out, { recursive: true, force: true });
    throw e;
  }
}

/** Pagemap entries: `present` ranges as PE_PRESENT, the rest of `base`'s pages as PE_PARENT, in address order. */
function overlayRuns(base: readonly Run[], present: readonly (readonly [number, number])[]): PagemapEntry[] {
  const entries: PagemapEntry[] = [];
  const cov = coverage(base).map(([s, n]): [number, number] => [s, s + n]);
  let i = 0;
  for (const [s, e] of present) {
    for (; i < cov.length && cov[i]![0] < s; i++) {
      const [cs, ce] = cov[i]!;
      appendRun(entries, cs, Math.min(ce, s) - cs, PE_PARENT, cs);
      if (ce > s) { cov[i] = [s, ce]; break; }
    }
    appendRun(entries, s, e - s, PE_PRESENT, s);
    for (; i < cov.length && cov[i]![0] < e; i++) {
      if (cov[i]![1] > e) { cov[i] = [e, cov[i]![1]]; break; }
    }
  }
  for (; i < cov.length; i++) appendRun(entries, cov[i]![0], cov[i]![1] - cov[i]![0], PE_PARENT, cov[i]![0]);
  return entries;
}
