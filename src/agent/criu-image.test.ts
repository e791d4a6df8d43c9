import { test, type TestContext } from 'node:test';
import { connect } from 'node:net';
import { once } from 'node:events';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, statSync, writeFileSync, cpSync, openSync, readSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isFerryError } from '../errors/index.ts';
import {
  decodePagemap, encodePagemap, readPagemap, writePagemap, makeIncremental, flattenImage,
  PAGE_SIZE, PE_PARENT, PE_LAZY, PE_PRESENT, IMG_COMMON_MAGIC, PAGEMAP_MAGIC, PAGEDIFF_PATH, DELTA_SERVER_PATH, startDeltaServer, type PagemapEntry, makeTrackedIncremental, markUnchangedLazy, type ChangedPages, writeMemoryImage, type ProcessPages,
} from './criu-image.ts';

const CRIU = process.env.FERRY_CRIU ?? '/opt/ferry/bin/criu';
const P = BigInt(PAGE_SIZE);

/** A CRIU 4.2 pagemap_entry message: vaddr, compat_nr_pages 0, flags, nr_pages (bytes as CRIU writes them). */
const REAL_ENTRY = Buffer.from('088020100020012802', 'hex'); // vaddr 0x1000, flags PE_PARENT, 2 pages
const record = (b: Buffer): Buffer => Buffer.concat([Buffer.from(Uint32Array.of(b.length).buffer), b]);
const magic = Buffer.from(Uint32Array.of(IMG_COMMON_MAGIC, PAGEMAP_MAGIC).buffer);

test('codec: decodes CRIU 4.2 bytes and writes them back identically', () => {
  const bytes = Buffer.concat([magic, record(Buffer.from('0807', 'hex')), record(REAL_ENTRY)]);
  const pm = decodePagemap(bytes);
  assert.deepEqual(pm.magic, [IMG_COMMON_MAGIC, PAGEMAP_MAGIC]);
  assert.deepEqual(pm.head, { pagesId: 7 });
  assert.deepEqual(pm.entries, [{ vaddr: 0x1000n, nrPages: 2, flags: PE_PARENT }]);
  assert.deepEqual(encodePagemap(pm.head, pm.entries, pm.magic), bytes);
});

test('codec: round-trips large addresses, counts and flags', () => {
  const entries: PagemapEntry[] = [
    { vaddr: 0x7fff_ffff_f000n, nrPages: 1, flags: PE_PRESENT },
    { vaddr: 0x1_0000_0000n, nrPages: 2 ** 33, flags: PE_PRESENT | PE_LAZY },
    { vaddr: 0xffff_ffff_ffff_f000n, nrPages: 3, flags: PE_PARENT },
    { vaddr: 0n, nrPages: 0, flags: 0 },
  ];
  const pm = decodePagemap(encodePagemap({ pagesId: 0xffff_ffff }, entries, [0x1234]));
  assert.deepEqual(pm.magic, [0x1234], 'a one-word magic (image without img_common_magic) stays one word');
  assert.deepEqual(pm.head, { pagesId: 0xffff_ffff });
  assert.deepEqual(pm.entries, entries);
  assert.deepEqual(pm.skippedFields, []);
});

test('codec: the plain-number fast path and the general decoder read the same entries', () => {
  const entries: PagemapEntry[] = Array.from({ length: 3000 }, (_, i) => ({
    vaddr: 0x7f12_3400_0000n + BigInt(i * 2 * PAGE_SIZE), nrPages: 1 + (i % 3), flags: i % 2 ? PE_PARENT | PE_LAZY : PE_PRESENT | PE_LAZY,
  }));
  const fast = decodePagemap(encodePagemap({ pagesId: 5 }, entries));
  assert.deepEqual(fast.entries, entries);
  // An address past 2^49 takes the whole image down the general path.
  const far: PagemapEntry = { vaddr: 0xffff_ffff_ffff_f000n, nrPages: 1, flags: PE_PRESENT };
  const general = decodePagemap(encodePagemap({ pagesId: 5 }, [...entries, far]));
  assert.deepEqual(general.entries, [...entries, far]);
  assert.deepEqual(general.head, fast.head);
});

test('codec: older images read the way CRIU reads them (compat_nr_pages, in_parent, no flags)', () => {
  const old = (hex: string): Buffer => record(Buffer.from(hex, 'hex'));
  // vaddr 0x2000 + compat 5 (no flags) → PE_PRESENT; vaddr 0x3000 + compat 1 + in_parent → PE_PARENT.
  const pm = decodePagemap(Buffer.concat([magic, old('0801'), old('0880401005'), old('08806010011801')]));
  assert.deepEqual(pm.entries, [{ vaddr: 0x2000n, nrPages: 5, flags: PE_PRESENT }, { vaddr: 0x3000n, nrPages: 1, flags: PE_PARENT }]);
});

test('codec: unknown fields are skipped and reported, unknown wire types rejected, truncation caught', () => {
  // Field 9 varint, field 10 length-delimited, field 11 fixed32 on an entry: skipped, not kept.
  const withUnknown = Buffer.concat([REAL_ENTRY, Buffer.from('4801' + '5202abcd' + '5d01020304', 'hex')]);
  const pm = decodePagemap(Buffer.concat([magic, record(Buffer.from('0801', 'hex')), record(withUnknown)]));
  assert.deepEqual(pm.skippedFields, [9, 10, 11]);
  assert.deepEqual(pm.entries, [{ vaddr: 0x1000n, nrPages: 2, flags: PE_PARENT }]);
  assert.equal(encodePagemap(pm.head, pm.entries, pm.magic).includes(Buffer.from('5202abcd', 'hex')), false);

  const group = Buffer.concat([magic, record(Buffer.from('0801', 'hex')), record(Buffer.from('0b', 'hex'))]);
  assert.throws(() => decodePagemap(group, 'g.img'), (e) => isFerryError(e, 'CRIU_IMAGE_UNSUPPORTED') && /wire type 3 \(field 1\)/.test(e.message));
  const cut = Buffer.concat([magic, record(Buffer.from('0801', 'hex')), record(REAL_ENTRY)]).subarray(0, -2);
  assert.throws(() => decodePagemap(cut, 'c.img'), (e) => isFerryError(e, 'CRIU_IMAGE_MALFORMED') && /c\.img/.test(e.message));
  assert.throws(() => decodePagemap(magic), /no pagemap_head/);
});

/** A page whose every byte is `b`. */
const page = (b: number): Buffer => Buffer.alloc(PAGE_SIZE, b);

/** Writes an image directory: one pagemap (pid 1) with its pages, plus a stand-in core image. */
function writeImage(dir: string, runs: { at: number; pages: Buffer[]; flags?: number }[], parent?: string): void {
  mkdirSync(dir, { recursive: true });
  const entries = runs.map((r) => ({ vaddr: BigInt(r.at) * P, nrPages: r.pages.length, flags: r.flags ?? PE_PRESENT | PE_LAZY }));
  writeFileSync(join(dir, 'pagemap-1.img'), encodePagemap({ pagesId: 1 }, entries));
  writeFileSync(join(dir, 'pages-1.img'), Buffer.concat(runs.filter((r) => (r.flags ?? PE_PRESENT) & PE_PRESENT).flatMap((r) => r.pages)));
  writeFileSync(join(dir, 'core-1.img'), 'core');
  if (parent) symlinkSync(parent, join(dir, 'parent'));
}

const flat = (entries: readonly PagemapEntry[]): string => entries.map((e) => `${(e.vaddr / P).toString(16)}:${e.nrPages}:${e.flags}`).join(' ');

test('makeIncremental: unchanged pages become PE_PARENT runs, changed ones keep their flags and bytes', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'ferry-incr-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  const lazy = { at: 0x900, pages: [page(9)], flags: PE_LAZY };
  writeImage(join(base, 'r1'), [{ at: 0x10, pages: [page(1), page(2), page(3), page(4)] }, { at: 0x20, pages: [page(5)] }]);
  writeImage(join(base, 'r2'), [{ at: 0x10, pages: [page(1), page(7), page(3), page(4), page(8)] }, { at: 0x30, pages: [page(6)] }, lazy]);
  const stats = await makeIncremental({ previous: join(base, 'r1'), current: join(base, 'r2'), out: join(base, 'inc'), parentLink: '../r1' });

  const pm = await readPagemap(join(base, 'inc/pagemap-1.img'));
  assert.equal(flat(pm.entries), '10:1:3 11:1:6 12:2:3 14:1:6 30:1:6 900:1:2', 'unchanged lazy pages stay lazy (PE_PARENT | PE_LAZY)');
  assert.deepEqual(readFileSync(join(base, 'inc/pages-1.img')), Buffer.concat([page(7), page(8), page(6)]));
  assert.equal(readlinkSync(join(base, 'inc/parent')), '../r1');
  assert.equal(readFileSync(join(base, 'inc/core-1.img'), 'utf8'), 'core');
  assert.equal(statSync(join(base, 'inc/core-1.img')).ino, statSync(join(base, 'r2/core-1.img')).ino, 'other files are hard-linked');
  assert.deepEqual(stats, { pagesTotal: 6, pagesChanged: 3, pageBytesWritten: 3 * PAGE_SIZE, bytesWritten: 3 * PAGE_SIZE + statSync(join(base, 'inc/pagemap-1.img')).size + 4 });
});

/**
 * Deterministic pseudo-random layouts of two rounds: runs that move, grow, shrink, vanish and appear;
 * pages that change by one byte, by all of them, or not at all.
 */
function randomLayouts(): { prevRuns: { at: number; pages: Buffer[] }[]; curRuns: { at: number; pages: Buffer[]; flags?: number }[] } {
  // Deterministic pseudo-random layouts: runs that move, grow, shrink, vanish and appear; pages that
  // change by one byte, by all of them, or not at all.
  let seed = 7;
  const rnd = (n: number): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
  const pageOf = (tag: number): Buffer => { const b = Buffer.alloc(PAGE_SIZE, tag & 0xff); b.writeUInt32LE(tag, 8); return b; };
  const prevRuns: { at: number; pages: Buffer[] }[] = [];
  const curRuns: { at: number; pages: Buffer[]; flags?: number }[] = [];
  for (let at = 0x100, tag = 1; at < 0x2000; at += 40 + rnd(60)) {
    const len = 1 + rnd(30);
    const pages = Array.from({ length: len }, () => pageOf(tag++));
    if (rnd(5) > 0) prevRuns.push({ at, pages });
    const shift = rnd(4) === 0 ? rnd(8) - 4 : 0;
    const curLen = Math.max(1, len + (rnd(3) === 0 ? rnd(10) - 5 : 0));
    const cur = Array.from({ length: curLen }, (_, i) => {
      const src = pages[i + shift]; // the same address in the previous round
      if (!src || rnd(6) === 0) return pageOf(100_000 + tag++);
      if (rnd(8) === 0) { const b = Buffer.from(src); b[rnd(PAGE_SIZE)]! ^= 0x5a; return b; }
      return src;
    });
    if (rnd(7) > 0) curRuns.push({ at: at + shift, pages: cur, ...(rnd(10) === 0 ? { flags: PE_PRESENT } : {}) });
  }
  return { prevRuns, curRuns };
}

test('makeIncremental: the native page comparer and the JS one write the same image', async (t) => {
  if (!existsSync(PAGEDIFF_PATH)) {
    if (process.env.CI === 'true') assert.fail(`${PAGEDIFF_PATH} is missing (scripts/setup builds it)`);
    return t.skip(`no ${PAGEDIFF_PATH} (scripts/setup builds it)`);
  }
  const base = mkdtempSync(join(tmpdir(), 'ferry-incr-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  const { prevRuns, curRuns } = randomLayouts();
  writeImage(join(base, 'prev'), prevRuns);
  writeImage(join(base, 'cur'), curRuns);
  const native = await makeIncremental({ previous: join(base, 'prev'), current: join(base, 'cur'), out: join(base, 'native'), parentLink: '../prev' });
  const js = await makeIncremental({ previous: join(base, 'prev'), current: join(base, 'cur'), out: join(base, 'js'), parentLink: '../prev', jsOnly: true });
  assert.deepEqual(native, js);
  assert.ok(js.pagesChanged > 0 && js.pagesChanged < js.pagesTotal, `a mix of changed and unchanged pages (${js.pagesChanged} of ${js.pagesTotal})`);
  assert.deepEqual((await readPagemap(join(base, 'native/pagemap-1.img'))).entries, (await readPagemap(join(base, 'js/pagemap-1.img'))).entries);
  assert.ok(readFileSync(join(base, 'native/pages-1.img')).equals(readFileSync(join(base, 'js/pages-1.img'))), 'the same changed pages, in the same order');
});

test('ferry-pagediff refuses pages past the end of a file and input that is not whole triples', (t) => {
  if (!existsSync(PAGEDIFF_PATH)) {
    if (process.env.CI === 'true') assert.fail(`${PAGEDIFF_PATH} is missing (scripts/setup builds it)`);
    return t.skip(`no ${PAGEDIFF_PATH}`);
  }
  const base = mkdtempSync(join(tmpdir(), 'ferry-pagediff-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  writeFileSync(join(base, 'a'), Buffer.concat([page(1), page(2)]));
  writeFileSync(join(base, 'b'), Buffer.concat([page(1), page(3), page(2)]));
  const run = (triples: number[]): { status: number | null; stdout: Buffer } =>
    spawnSync(PAGEDIFF_PATH, [join(base, 'a'), join(base, 'b')], { input: Buffer.from(BigUint64Array.from(triples.map(BigInt)).buffer) });
  const ok = run([0, 0, 2, 1, 2, 1]);
  assert.equal(ok.status, 0);
  assert.deepEqual([...ok.stdout], [1, 0, 1]);
  assert.equal(run([1, 0, 2]).status, 2, 'page 2 of a 2-page file');
  assert.equal(spawnSync(PAGEDIFF_PATH, [join(base, 'a'), join(base, 'b')], { input: Buffer.alloc(10) }).status, 2);
});

/** A page_server_iov as CRIU sends it (criu/page-xfer.c): 32 bytes with a u64 nr_pages in 4.2, 24 before. */
function psi(cmd: number, nrPages: number, vaddr: bigint, dstId: bigint, wide: boolean): Buffer {
  const b = Buffer.alloc(wide ? 32 : 24);
  b.writeUInt32LE(cmd >>> 0, 0);
  if (wide) b.writeBigUInt64LE(BigInt(nrPages), 8);
  else b.writeUInt32LE(nrPages, 4);
  b.writeBigUInt64LE(vaddr, wide ? 16 : 8);
  b.writeBigUInt64LE(dstId, wide ? 24 : 16);
  return b;
}

/** Sends pagemap-ID.img of `dir` (each of `ids`, in order) with its pages to a page server the way `criu dump --page-server` does. */
async function streamLikeCriu(address: string, dir: string, o: { flush?: boolean; wide?: boolean; ids?: number[] } = {}): Promise<void> {
  const wide = o.wide ?? true;
  const [host, port] = address.split(':');
  const sock = connect(Number(port), host!);
  let got = Buffer.alloc(0);
  sock.on('data', (b: Buffer) => { got = Buffer.concat([got, b]); });
  const answer = async (n: number): Promise<Buffer> => {
    while (got.length < n) await once(sock, 'data');
    const a = got.subarray(0, n);
    got = got.subarray(n);
    return a;
  };
  await once(sock, 'connect');
  for (const id of o.ids ?? [1]) {
    const pm = await readPagemap(join(dir, `pagemap-${id}.img`));
    const pages = readFileSync(join(dir, `pages-${pm.head.pagesId}.img`));
    const dst = (BigInt(id) << 8n) | 1n; // pid `id`'s pagemap (PS_TYPE_PID)
    sock.write(psi(4, 0, 0n, dst, wide)); // PS_IOV_OPEN2
    assert.deepEqual([...await answer(1)], [0], 'the server says it has no parent for CRIU (it decides what is the parent\'s)');
    let off = 0;
    for (const e of pm.entries) {
      sock.write(psi((e.flags << 16) | 6, e.nrPages, e.vaddr, dst, wide)); // PS_IOV_ADD_F
      if (e.flags & PE_PRESENT) sock.write(pages.subarray(off, (off += e.nrPages * PAGE_SIZE)));
    }
  }
  if (o.flush !== false) {
    sock.write(psi(0x1023, 0, 0n, 0n, wide)); // PS_IOV_FLUSH
    assert.equal((await answer(4)).readInt32LE(0), 0);
  }
  sock.end();
  await once(sock, 'close');
}

/** Fails under CI (or skips) when the delta server is not built; true when it is. */
function deltaServerBuilt(t: TestContext): boolean {
  if (existsSync(DELTA_SERVER_PATH)) return true;
  if (process.env.CI === 'true') assert.fail(`${DELTA_SERVER_PATH} is missing (scripts/setup builds it)`);
  t.skip(`no ${DELTA_SERVER_PATH} (scripts/setup builds it)`);
  return false;
}

test('startDeltaServer: the image it writes from a streamed dump is the one makeIncremental writes from files', async (t) => {
  if (!deltaServerBuilt(t)) return;
  const base = mkdtempSync(join(tmpdir(), 'ferry-delta-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  const { prevRuns, curRuns } = randomLayouts();
  writeImage(join(base, 'prev'), prevRuns);
  writeImage(join(base, 'cur'), [...curRuns, { at: 0x9000, pages: [page(9)], flags: PE_LAZY }]);
  const files = await makeIncremental({ previous: join(base, 'prev'), current: join(base, 'cur'), out: join(base, 'files'), parentLink: '../prev', jsOnly: true });
  assert.ok(files.pagesChanged > 0 && files.pagesChanged < files.pagesTotal, `a mix of changed and unchanged pages (${files.pagesChanged} of ${files.pagesTotal})`);
  const a = await readPagemap(join(base, 'files/pagemap-1.img'));
  for (const wide of [true, false]) {
    const out = join(base, wide ? 'streamed-4.2' : 'streamed-older');
    const server = await startDeltaServer({ previous: join(base, 'prev'), out, parentLink: '../prev' });
    assert.ok(server, 'a flat previous round and a built helper give a server');
    assert.match(server.address, /^127\.0\.0\.1:\d+$/);
    await streamLikeCriu(server.address, join(base, 'cur'), { wide });
    const streamed = await server.finish();
    assert.deepEqual({ ...streamed, bytesWritten: 0 }, { ...files, bytesWritten: 0 });
    const b = await readPagemap(join(out, 'pagemap-1.img'));
    assert.deepEqual(b.entries, a.entries);
    assert.ok(readFileSync(join(out, `pages-${b.head.pagesId}.img`)).equals(readFileSync(join(base, `files/pages-${a.head.pagesId}.img`))), 'the same changed pages, in the same order');
    assert.equal(readlinkSync(join(out, 'parent')), '../prev');
    assert.deepEqual(readdirSync(out).sort(), ['pagemap-1.img', `pages-${b.head.pagesId}.img`, 'parent'].sort(), 'no working files are left');
  }
});

test('startDeltaServer without a previous round receives a plain image, the big pagemap\'s pages written into the allocated pool (one that holds them, and one they overflow)', async (t) => {
  if (!deltaServerBuilt(t)) return;
  const base = mkdtempSync(join(tmpdir(), 'ferry-delta-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  // Three processes: a small one first (its pages leave the pool), a big one (> 16 MiB: it keeps the
  // pool), a small one after (a file of its own).
  const tagged = (n: number, tag: number): Buffer[] => Array.from({ length: n }, (_, i) => { const b = Buffer.alloc(PAGE_SIZE, (tag + i) & 0xff); b.writeUInt32LE(i, 0); return b; });
  const procs: [number, { at: number; pages: Buffer[]; flags: number }[]][] = [
    [7, [{ at: 0x10, pages: tagged(3, 1), flags: PE_PRESENT | PE_LAZY }, { at: 0x40, pages: [page(0)], flags: PE_LAZY }]],
    [8, [{ at: 0x100, pages: tagged(4100, 50), flags: PE_PRESENT | PE_LAZY }, { at: 0x9000, pages: tagged(20, 9), flags: PE_PRESENT }]],
    [9, [{ at: 0x20, pages: tagged(2, 200), flags: PE_PRESENT }]],
  ];
  mkdirSync(join(base, 'src'));
  for (const [id, runs] of procs) {
    writeFileSync(join(base, `src/pagemap-${id}.img`), encodePagemap({ pagesId: id }, runs.map((r) => ({ vaddr: BigInt(r.at) * P, nrPages: r.pages.length, flags: r.flags }))));
    writeFileSync(join(base, `src/pages-${id}.img`), Buffer.concat(runs.filter((r) => r.flags & PE_PRESENT).flatMap((r) => r.pages)));
  }
  // 24 MiB holds the big pagemap; 12 MiB and 5 pages does not (the rest is written after what was
  // received into the mapped pool, from a chunk that does not fit whole).
  for (const poolBytes of [24 << 20, (12 << 20) + 5 * PAGE_SIZE]) {
    const out = join(base, `out-${poolBytes}`);
    const server = await startDeltaServer({ out, poolBytes });
    assert.ok(server);
    assert.ok(existsSync(join(out, '.pool')), 'the pool is allocated before CRIU connects');
    await streamLikeCriu(server.address, join(base, 'src'), { ids: procs.map(([id]) => id) });
    const stats = await server.finish();
    assert.equal(stats.pagesChanged, stats.pagesTotal, 'without a previous round every page is kept');
    assert.equal(stats.pagesTotal, 3 + 4120 + 2);
    // The pool's file size says nothing while it fills; the server's "got" lines do (every 16 MiB).
    assert.ok(server.received() >= 16 << 20 && server.received() <= stats.pagesTotal * PAGE_SIZE, `received ${server.received()}`);
    for (const [id] of procs) {
      const [want, got] = [await readPagemap(join(base, `src/pagemap-${id}.img`)), await readPagemap(join(out, `pagemap-${id}.img`))];
      assert.deepEqual(got.entries, want.entries, `pool ${poolBytes}: pagemap ${id}`);
      assert.ok(readFileSync(join(out, `pages-${got.head.pagesId}.img`)).equals(readFileSync(join(base, `src/pages-${id}.img`))), `pool ${poolBytes}: the pages of ${id}`);
    }
    assert.ok(!readdirSync(out).some((n) => n === '.pool' || n === 'parent' || n.startsWith('entries-')), 'no pool, parent link or working file is left');
  }
});

test('startDeltaServer: a dump that ends without its flush fails, stop() ends a waiting server, bad inputs are refused', async (t) => {
  if (!deltaServerBuilt(t)) return;
  const base = mkdtempSync(join(tmpdir(), 'ferry-delta-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  writeImage(join(base, 'prev'), [{ at: 0x10, pages: [page(1), page(2)] }]);
  writeImage(join(base, 'cur'), [{ at: 0x10, pages: [page(1), page(3)] }]);
  const cut = await startDeltaServer({ previous: join(base, 'prev'), out: join(base, 'cut'), parentLink: '../prev' });
  await streamLikeCriu(cut!.address, join(base, 'cur'), { flush: false });
  await assert.rejects(cut!.finish(), /before flushing/);

  const idle = await startDeltaServer({ previous: join(base, 'prev'), out: join(base, 'idle'), parentLink: '../prev' });
  await idle!.stop();
  await assert.rejects(idle!.finish(), /killed/);

  await assert.rejects(startDeltaServer({ previous: join(base, 'prev'), out: join(base, 'cur'), parentLink: '../prev' }), (e) => isFerryError(e, 'INCREMENTAL_OUT_NOT_EMPTY'));
  // An incremental previous round is left to the file comparison, which reads through its parent.
  writeImage(join(base, 'inc'), [{ at: 0x10, pages: [page(1)], flags: PE_PARENT }], '../prev');
  assert.equal(await startDeltaServer({ previous: join(base, 'inc'), out: join(base, 'o'), parentLink: '../inc' }), undefined);
  assert.equal(await startDeltaServer({ previous: join(base, 'prev'), out: join(base, 'o'), parentLink: '../prev', helper: join(base, 'none') }), undefined);
});

test('makeIncremental: an incremental previous is read through its own parent chain', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'ferry-incr-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  writeImage(join(base, 'r1'), [{ at: 0x10, pages: [page(1), page(2), page(3)] }]);
  writeImage(join(base, 'r2'), [{ at: 0x10, pages: [page(1), page(5), page(3)] }]);
  await makeIncremental({ previous: join(base, 'r1'), current: join(base, 'r2'), out: join(base, 'i2'), parentLink: '../r1' });
  writeImage(join(base, 'r3'), [{ at: 0x10, pages: [page(1), page(5), page(6)] }]);
  const stats = await makeIncremental({ previous: join(base, 'i2'), current: join(base, 'r3'), out: join(base, 'i3'), parentLink: '../i2' });
  assert.equal(flat((await readPagemap(join(base, 'i3/pagemap-1.img'))).entries), '10:2:3 12:1:6');
  assert.equal(stats.pagesChanged, 1);

  // A previous whose parent chain is not on this host: its PE_PARENT pages count as changed.
  rmSync(join(base, 'i2/parent'));
  await makeIncremental({ previous: join(base, 'i2'), current: join(base, 'r3'), out: join(base, 'i3b'), parentLink: '../i2' });
  assert.equal(flat((await readPagemap(join(base, 'i3b/pagemap-1.img'))).entries), '10:1:6 11:1:3 12:1:6');
});

test('makeIncremental: refuses bad inputs and leaves no half-written output', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'ferry-incr-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  writeImage(join(base, 'r1'), [{ at: 0x10, pages: [page(1)] }]);
  writeImage(join(base, 'inc'), [{ at: 0x10, pages: [page(1)], flags: PE_PARENT }], '../r1');
  const req = { previous: join(base, 'r1'), parentLink: '../r1' };
  await assert.rejects(makeIncremental({ ...req, current: join(base, 'inc'), out: join(base, 'o1') }), (e) => isFerryError(e, 'CRIU_IMAGE_UNSUPPORTED') && /already incremental/.test(e.message));
  assert.equal(existsSync(join(base, 'o1')), false);
  await assert.rejects(makeIncremental({ ...req, current: join(base, 'r1'), out: join(base, 'inc') }), (e) => isFerryError(e, 'INCREMENTAL_OUT_NOT_EMPTY'));
  writeFileSync(join(base, 'r1/pages-1.img'), 'short');
  await assert.rejects(makeIncremental({ ...req, current: join(base, 'r1'), out: join(base, 'o2') }), /is 5 bytes, but .* lists 1 present pages/);
  await writePagemap(join(base, 'r1/pagemap-1.img'), { pagesId: 1 }, [{ vaddr: 0x10n, nrPages: 1, flags: PE_PRESENT }]);
  writeFileSync(join(base, 'r1/pages-1.img'), page(1));
  await assert.rejects(makeIncremental({ ...req, current: join(base, 'r1'), out: join(base, 'o3') }), /not page-aligned/);
});

// ---- Against real CRIU: dump a process twice, restore from the incremental image. ----

/** Why the CRIU test cannot run here, or undefined. */
function criuMissing(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (CRIU dumps only root processes outside a user namespace)';
  if (!existsSync(CRIU)) return `needs CRIU at ${CRIU} (scripts/setup)`;
  const check = spawnSync(CRIU, ['check'], { encoding: 'utf8' });
  if (check.status !== 0) return `criu check failed: ${(check.stderr || check.stdout).trim().split('\n').slice(-3).join(' / ')}`;
  if (spawnSync('sh', ['-c', 'command -v gcc']).status !== 0) return 'needs gcc to build the test process';
  return undefined;
}

const PAGES = 1024;
const TOUCHED_EVERY = 7;
/** Fills PAGES anonymous pages with a pattern, writes their address, and waits. */
const PROGRAM = `#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv) {
  unsigned char *m = mmap(0, ${PAGES} * 4096UL, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  for (unsigned long i = 0; i < ${PAGES}; i++) memset(m + i * 4096, (int)(i * 31 + 1), 4096);
  FILE *f = fopen(argv[1], "w");
  fprintf(f, "%lx\\n", (unsigned long)m);
  fclose(f);
  for (;;) pause();
}
`;

function criu(args: string[], log: string): void {
  const r = spawnSync(CRIU, [...args, '-v4', '-o', log], { encoding: 'utf8' });
  if (r.status === 0) return;
  const errors = existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter((l) => /Error|error|fail/.test(l) && !/RLIMIT_NOFILE/.test(l)) : [];
  assert.fail(`criu ${args[0]} exited ${r.status}: ${r.stderr}\n${errors.join('\n')}`);
}

function memory(pid: number, addr: number, len: number): Buffer {
  const fd = openSync(`/proc/${pid}/mem`, 'r');
  try {
    const buf = Buffer.alloc(len);
    assert.equal(readSync(fd, buf, 0, len, addr), len);
    return buf;
  } finally {
    closeSync(fd);
  }
}

/** Page contents of a plain dump by address, read the simple way (one pagemap). */
async function pagesByAddress(dir: string): Promise<Map<bigint, Buffer>> {
  const name = readdirSync(dir).find((n) => /^pagemap-\d+\.img$/.test(n))!;
  const pm = await readPagemap(join(dir, name));
  const bytes = readFileSync(join(dir, `pages-${pm.head.pagesId}.img`));
  const out = new Map<bigint, Buffer>();
  let off = 0;
  for (const e of pm.entries.filter((x) => x.flags & PE_PRESENT)) {
    for (let i = 0; i < e.nrPages; i++, off += PAGE_SIZE) out.set(e.vaddr + BigInt(i) * P, bytes.subarray(off, off + PAGE_SIZE));
  }
  return out;
}

async function waitFor<T>(what: string, probe: () => T | undefined, ms = 5000): Promise<T> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 20))) {
    const v = probe();
    if (v !== undefined) return v;
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** True while `pid` exists and is not a zombie. */
test('flattenImage: resolves a parent chain into one flat image; with consumeParent it patches a flat parent in place', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'ferry-flat-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  const r1 = [{ at: 0x10, pages: [page(1), page(2), page(3), page(4)] }, { at: 0x20, pages: [page(5)] }];
  const r2 = [{ at: 0x10, pages: [page(1), page(7), page(3), page(4)] }, { at: 0x20, pages: [page(8)] }];
  const r3 = [{ at: 0x10, pages: [page(9), page(7), page(3), page(4)] }, { at: 0x20, pages: [page(8)] }];
  const want = (runs: typeof r1): Buffer => Buffer.concat(runs.flatMap((r) => r.pages));
  writeImage(join(base, 'full1'), r1);
  writeImage(join(base, 'full2'), r2);
  writeImage(join(base, 'full3'), r3);
  // As the target lays rounds out: 1 full, 2 and 3 incremental (3 → 2 → 1).
  cpSync(join(base, 'full1'), join(base, 't/1'), { recursive: true });
  await makeIncremental({ previous: join(base, 'full1'), current: join(base, 'full2'), out: join(base, 't/2'), parentLink: '../1' });
  await makeIncremental({ previous: join(base, 'full2'), current: join(base, 'full3'), out: join(base, 't/3'), parentLink: '../2' });

  // Copying: two levels deep, every page read through the chain; the chain stays as it was.
  const s = await flattenImage(join(base, 't/3'), join(base, 'flat3'));
  assert.deepEqual(s, { pages: 5, pagesWritten: 5, patchedParent: false });
  assert.deepEqual(readFileSync(join(base, 'flat3/pages-1.img')), want(r3));
  assert.ok((await readPagemap(join(base, 'flat3/pagemap-1.img'))).entries.every((e) => e.flags & PE_PRESENT && !(e.flags & PE_PARENT)));
  assert.equal(existsSync(join(base, 'flat3/parent')), false, 'no parent link');
  assert.equal(readFileSync(join(base, 'flat3/core-1.img'), 'utf8'), 'core');
  assert.deepEqual(readFileSync(join(base, 't/1/pages-1.img')), want(r1), 'without consumeParent the chain is untouched');

  // Patching: round 2 onto flat round 1 (same pages), then round 3 onto that: only changed pages written.
  const p2 = await flattenImage(join(base, 't/2'), join(base, 't/2.flat'), { consumeParent: true });
  assert.deepEqual(p2, { pages: 5, pagesWritten: 2, patchedParent: true });
  assert.deepEqual(readFileSync(join(base, 't/2.flat/pages-1.img')), want(r2));
  assert.equal(existsSync(join(base, 't/1/pages-1.img')), false, 'the parent\'s pages file moved into the flat image');
  rmSync(join(base, 't/2'), { recursive: true });
  cpSync(join(base, 't/2.flat'), join(base, 't/2'), { recursive: true });
  const p3 = await flattenImage(join(base, 't/3'), join(base, 't/3.flat'), { consumeParent: true });
  assert.deepEqual(p3, { pages: 5, pagesWritten: 1, patchedParent: true });
  assert.deepEqual(readFileSync(join(base, 't/3.flat/pages-1.img')), want(r3));
  assert.deepEqual((await readPagemap(join(base, 't/3.flat/pagemap-1.img'))).entries, (await readPagemap(join(base, 'full1/pagemap-1.img'))).entries);

  // A layout that changed (a new run) is copied, not patched, even with consumeParent.
  writeImage(join(base, 'full4'), [...r3, { at: 0x40, pages: [page(6)] }]);
  await makeIncremental({ previous: join(base, 'full3'), current: join(base, 'full4'), out: join(base, 't/4'), parentLink: '../3.flat' });
  const p4 = await flattenImage(join(base, 't/4'), join(base, 't/4.flat'), { consumeParent: true });
  assert.deepEqual(p4, { pages: 6, pagesWritten: 6, patchedParent: false, copiedWhy: 'pagemap-1.img: its pages 0x40000+1 against the parent\'s nothing (range 3 of 3 vs 2)' });
  assert.deepEqual(readFileSync(join(base, 't/4.flat/pages-1.img')), Buffer.concat([want(r3), page(6)]));

  // A chain with a page missing is refused, and nothing is left in `out`.
  rmSync(join(base, 't/4/parent'));
  await assert.rejects(flattenImage(join(base, 't/4'), join(base, 'bad')), /page 0x10 is in no image of its parent chain/);
  assert.equal(existsSync(join(base, 'bad')), false);
});

function alive(pid: number): boolean {
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

test('real CRIU: two --leave-running dumps → incremental image → restore has the second dump\'s memory', async (t) => {
  const missing = criuMissing();
  if (missing !== undefined) {
    if (process.env.CI === 'true') assert.fail(`CRIU integration test cannot run: ${missing}`);
    t.skip(missing);
    return;
  }
  const base = mkdtempSync(join(tmpdir(), 'ferry-criu-image-'));
  const pids = new Set<number>();
  t.after(async () => {
    for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
    for (const pid of pids) await waitFor(`pid ${pid} to go`, () => (alive(pid) ? undefined : true)).catch(() => undefined);
    rmSync(base, { recursive: true, force: true });
  });
  writeFileSync(join(base, 'mem.c'), PROGRAM);
  assert.equal(spawnSync('gcc', ['-O2', '-o', join(base, 'mem'), join(base, 'mem.c')], { stdio: 'inherit' }).status, 0, 'gcc builds the test process');
  const child = spawn(join(base, 'mem'), [join(base, 'addr')], { detached: true, stdio: 'ignore' });
  const pid = child.pid!;
  pids.add(pid);
  const exited = new Promise((r) => child.once('exit', r));
  const addr = parseInt(await waitFor('the address file', () => (existsSync(join(base, 'addr')) ? readFileSync(join(base, 'addr'), 'utf8').trim() || undefined : undefined)), 16);

  criu(['dump', '-t', String(pid), '--leave-running', '--shell-job', '-D', mkdirP(join(base, 'round-1'))], join(base, 'dump-1.log'));
  const changed = new Set<number>();
  const fd = openSync(`/proc/${pid}/mem`, 'r+');
  for (let i = 0; i < PAGES; i += TOUCHED_EVERY) {
    writeSync(fd, Buffer.from(`round 2, page ${i}`), 0, undefined, addr + i * PAGE_SIZE + 100);
    changed.add(i);
  }
  closeSync(fd);
  criu(['dump', '-t', String(pid), '--leave-running', '--shell-job', '-D', mkdirP(join(base, 'round-2'))], join(base, 'dump-2.log'));
  const expected = memory(pid, addr, PAGES * PAGE_SIZE);
  // The same round once more, streamed by CRIU into the delta server, which compares as pages arrive.
  const server = await startDeltaServer({ previous: join(base, 'round-1'), out: join(base, 'streamed'), parentLink: '../round-1' });
  assert.ok(server, 'scripts/setup built the delta server');
  const [, port] = server.address.split(':');
  criu(['dump', '-t', String(pid), '--leave-running', '--shell-job', '-D', join(base, 'streamed'), '--page-server', '--address', '127.0.0.1', '--port', port!], join(base, 'dump-streamed.log'));
  const streamedStats = await server.finish();

  const stats = await makeIncremental({ previous: join(base, 'round-1'), current: join(base, 'round-2'), out: join(base, 'incremental'), parentLink: '../round-1' });

  // Exactly the pages whose content differs between the two full dumps are present, in order, with their bytes.
  const [r1, r2] = [await pagesByAddress(join(base, 'round-1')), await pagesByAddress(join(base, 'round-2'))];
  const differing = [...r2].filter(([a, b]) => !r1.get(a)?.equals(b)).map(([a]) => a);
  const name = readdirSync(join(base, 'incremental')).find((n) => n.startsWith('pagemap-'))!;
  const inc = await readPagemap(join(base, 'incremental', name));
  /** Addresses of an image's own (PE_PRESENT) pages, in pages-file order. */
  const ownPages = (pm: { readonly entries: readonly PagemapEntry[] }): bigint[] => pm.entries.filter((e) => e.flags & PE_PRESENT).flatMap((e) => Array.from({ length: e.nrPages }, (_, i) => e.vaddr + BigInt(i) * P));
  /** Which pages of the test buffer are among `addrs`, as page indexes. */
  const inBuffer = (addrs: bigint[]): number[] => addrs.filter((a) => a >= BigInt(addr) && a < BigInt(addr + PAGES * PAGE_SIZE)).map((a) => Number((a - BigInt(addr)) / P));
  /** Restores the killed process from `dir` and checks it runs with the second dump's memory, reading the parent image or not. */
  const restoreFrom = (dir: string, log: string, fromParent: boolean, what: string): void => {
    criu(['restore', '-D', dir, '--restore-detached', '--shell-job'], join(base, log));
    assert.ok(alive(pid), `restored ${what}, under its old pid`);
    (fromParent ? assert.match : assert.doesNotMatch)(readFileSync(join(base, log), 'utf8'), /Read from parent/, fromParent ? 'CRIU took pages from the parent image' : 'no parent image was read');
    assert.ok(memory(pid, addr, PAGES * PAGE_SIZE).equals(expected), `restored memory ${what} equals the second dump`);
  };
  const present = ownPages(inc);
  assert.deepEqual(present, differing);
  assert.deepEqual(inBuffer(present), [...changed], 'in the test buffer, exactly the touched pages travel');
  assert.deepEqual(readFileSync(join(base, 'incremental', `pages-${inc.head.pagesId}.img`)), Buffer.concat(differing.map((a) => r2.get(a)!)));
  assert.equal(stats.pagesChanged, differing.length);
  assert.equal(stats.pagesTotal, r2.size);
  t.diagnostic(`pages: ${stats.pagesTotal} total, ${stats.pagesChanged} changed; ${stats.bytesWritten} bytes to ship`);

  // Ship as the target would lay it out (round-1 full, round-2 incremental) and restore from there.
  cpSync(join(base, 'round-1'), join(base, 'target/round-1'), { recursive: true });
  cpSync(join(base, 'incremental'), join(base, 'target/round-2'), { recursive: true, verbatimSymlinks: true });
  process.kill(pid, 'SIGKILL');
  await exited;
  restoreFrom(join(base, 'target/round-2'), 'restore.log', true, 'from the incremental image');

  // The same image made flat on the target (round-1's pages file patched with round-2's pages): CRIU
  // restores it without a parent, with the same memory.
  const flat = await flattenImage(join(base, 'target/round-2'), join(base, 'target/flat'), { consumeParent: true });
  assert.equal(flat.patchedParent, true, 'the layout did not change between the dumps: patched, not copied');
  assert.equal(flat.pagesWritten, stats.pagesChanged);
  process.kill(pid, 'SIGKILL');
  // Gone altogether (reaped), so that CRIU can have the pid again.
  await waitFor(`pid ${pid} to be reaped`, () => (existsSync(`/proc/${pid}`) ? undefined : true));
  restoreFrom(join(base, 'target/flat'), 'restore-flat.log', false, 'from the flat image');

  // The streamed image: in the test buffer exactly the touched pages are its own, and it restores
  // (through round-1, as the target lays it out) to the same memory.
  const sname = readdirSync(join(base, 'streamed')).find((n) => /^pagemap-\d+\.img$/.test(n))!;
  assert.equal(sname, name, 'the pagemap CRIU would have written');
  const spm = await readPagemap(join(base, 'streamed', sname));
  assert.deepEqual(inBuffer(ownPages(spm)), [...changed]);
  assert.equal(streamedStats.pagesTotal, r2.size, 'every page of the process went through the server');
  assert.ok(!readdirSync(join(base, 'streamed')).some((n) => n.startsWith('entries-')), 'no working files are left');
  t.diagnostic(`streamed: ${streamedStats.pagesChanged} of ${streamedStats.pagesTotal} pages changed`);
  cpSync(join(base, 'round-1'), join(base, 'target-streamed/round-1'), { recursive: true });
  cpSync(join(base, 'streamed'), join(base, 'target-streamed/round-2'), { recursive: true, verbatimSymlinks: true });
  process.kill(pid, 'SIGKILL');
  await waitFor(`pid ${pid} to be reaped`, () => (existsSync(`/proc/${pid}`) ? undefined : true));
  restoreFrom(join(base, 'target-streamed/round-2'), 'restore-streamed.log', true, 'from the streamed image');
});

function mkdirP(dir: string): string {
  mkdirSync(dir, { recursive: true });
  return dir;
}

test('makeTrackedIncremental: written pages are read, the others become PE_PARENT runs; nothing is assumed', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'ferry-tracked-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  // The round the target holds: two runs. The lazy dump at the freeze: the same pages without bytes,
  // one more page at 0x14 (new since), and a page CRIU kept itself (not lazy: its bytes are in the dump).
  writeImage(join(base, 'prev'), [{ at: 0x10, pages: [page(1), page(2), page(3), page(4)] }, { at: 0x20, pages: [page(5)] }]);
  const lazy = (n: number): Buffer[] => Array.from({ length: n }, () => Buffer.alloc(0));
  writeImage(join(base, 'dump'), [
    { at: 0x10, pages: lazy(5), flags: PE_LAZY },
    { at: 0x20, pages: lazy(1), flags: PE_LAZY },
    { at: 0x30, pages: [page(0x33)], flags: PE_PRESENT },
  ]);
  // Memory now: pages 0x11 and 0x14 were written (and 0x40, not in the dump: ignored).
  const memory = new Map([[0x11, page(0x71)], [0x14, page(0x74)], [0x40, page(0x40)]]);
  const reads: string[] = [];
  const changed = (ranges: [number, number][]): Map<string, ChangedPages> => new Map([['1', {
    ranges,
    read(first: number, count: number, buf: Buffer) {
      reads.push(`${first.toString(16)}+${count}`);
      for (let i = 0; i < count; i++) (memory.get(first + i) ?? assert.fail(`page ${(first + i).toString(16)} read but not written`)).copy(buf, i * PAGE_SIZE);
    },
  }]]);
  const stats = await makeTrackedIncremental({ dump: join(base, 'dump'), previous: join(base, 'prev'), out: join(base, 'send'), parentLink: '../prev', changed: changed([[0x11, 0x12], [0x14, 0x15], [0x40, 0x41]]) });
  assert.deepEqual(reads, ['11+1', '14+1']);
  assert.deepEqual([stats.pagesTotal, stats.pagesChanged], [7, 3]);
  const pm = await readPagemap(join(base, 'send/pagemap-1.img'));
  assert.equal(flat(pm.entries), `10:1:${PE_PARENT | PE_LAZY} 11:1:${PE_PRESENT | PE_LAZY} 12:2:${PE_PARENT | PE_LAZY} 14:1:${PE_PRESENT | PE_LAZY} 20:1:${PE_PARENT | PE_LAZY} 30:1:${PE_PRESENT}`);
  assert.deepEqual(readFileSync(join(base, 'send/pages-1.img')), Buffer.concat([page(0x71), page(0x74), page(0x33)]));
  assert.equal(readlinkSync(join(base, 'send/parent')), '../prev');
  assert.equal(readFileSync(join(base, 'send/core-1.img'), 'utf8'), 'core');
  // The target's flat image from it holds the pages as they are now.
  const f = await flattenImage(join(base, 'send'), join(base, 'flat'));
  assert.equal(f.pages, 7);
  assert.deepEqual(readFileSync(join(base, 'flat/pages-1.img')), Buffer.concat([page(1), page(0x71), page(3), page(4), page(0x74), page(5), page(0x33)]));

  // 0x14 not written and not in the previous round: refused, nothing left in `out`.
  await assert.rejects(
    makeTrackedIncremental({ dump: join(base, 'dump'), previous: join(base, 'prev'), out: join(base, 'send2'), parentLink: '../prev', changed: changed([[0x11, 0x12]]) }),
    (e: unknown) => isFerryError(e, 'CRIU_IMAGE_MALFORMED') && /page 0x14000 was neither written since the previous round nor in it/.test((e as Error).message),
  );
  assert.equal(existsSync(join(base, 'send2')), false);
  // A process the tracker did not follow: refused.
  await assert.rejects(
    makeTrackedIncremental({ dump: join(base, 'dump'), previous: join(base, 'prev'), out: join(base, 'send3'), parentLink: '../prev', changed: new Map() }),
    (e: unknown) => isFerryError(e, 'CRIU_IMAGE_UNSUPPORTED') && /not tracked/.test((e as Error).message),
  );
});

test('markUnchangedLazy: an incremental dump that left the unchanged pages out (PE_PARENT): clean ones turn lazy, others stay eager', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'ferry-tracked-holes-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  writeImage(join(base, 'prev'), [{ at: 0x10, pages: [page(1), page(2), page(3), page(4)] }, { at: 0x20, pages: [page(5), page(6)] }]);
  const hole = (n: number): Buffer[] => Array.from({ length: n }, () => Buffer.alloc(0));
  // CRIU's incremental dump (clean-pages shim): 0x10, 0x12–0x13 and 0x20 unchanged (holes), 0x11
  // written and 0x21 a stack pointer's page, both dumped.
  const lz = PE_PRESENT | PE_LAZY;
  writeImage(join(base, 'dump'), [
    { at: 0x10, pages: hole(1), flags: PE_PARENT },
    { at: 0x11, pages: [page(0x71)], flags: lz },
    { at: 0x12, pages: hole(2), flags: PE_PARENT },
    { at: 0x20, pages: hole(1), flags: PE_PARENT },
    { at: 0x21, pages: [page(0x66)], flags: PE_PRESENT },
  ]);
  symlinkSync('../prev', join(base, 'dump/parent'));
  // The shim's list: 0x10–0x14 clean; 0x20 is a PE_PARENT entry outside it (stays eager).
  const clean = new Map([['1', [[0x10, 0x11], [0x12, 0x14]] as [number, number][]]]);
  const stats = await markUnchangedLazy({ dump: join(base, 'dump'), previous: join(base, 'prev'), clean });
  assert.deepEqual([stats.pagesTotal, stats.pagesChanged], [6, 2]);
  const pm = await readPagemap(join(base, 'dump/pagemap-1.img'));
  assert.equal(flat(pm.entries), `10:1:${PE_PARENT | PE_LAZY} 11:1:${lz} 12:2:${PE_PARENT | PE_LAZY} 20:1:${PE_PARENT} 21:1:${PE_PRESENT}`);
  assert.deepEqual(readFileSync(join(base, 'dump/pages-1.img')), Buffer.concat([page(0x71), page(0x66)]), "CRIU's pages file, untouched");
  assert.ok(!readdirSync(join(base, 'dump')).some((n) => n.endsWith('.tmp')));
  const f = await flattenImage(join(base, 'dump'), join(base, 'flat'));
  assert.equal(f.pages, 6);
  assert.deepEqual(readFileSync(join(base, 'flat/pages-1.img')), Buffer.concat([page(1), page(0x71), page(3), page(4), page(5), page(0x66)]));
  const fm = await readPagemap(join(base, 'flat/pagemap-1.img'));
  assert.equal(flat(fm.entries), `10:1:${lz} 11:1:${lz} 12:2:${lz} 20:1:${PE_PRESENT} 21:1:${PE_PRESENT}`, 'the restore fills only 0x20–0x21 at once');

  // A hole the previous round does not hold: refused (CRIU checks this too).
  writeImage(join(base, 'dump2'), [{ at: 0x30, pages: hole(1), flags: PE_PARENT }]);
  await assert.rejects(
    markUnchangedLazy({ dump: join(base, 'dump2'), previous: join(base, 'prev'), clean }),
    (e: unknown) => isFerryError(e, 'CRIU_IMAGE_MALFORMED') && /page 0x30000 is a PE_PARENT entry of the dump but not in the previous round/.test((e as Error).message),
  );
});

test('writeMemoryImage: rounds read from running memory, over a flat previous, flatten into what memory holds', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'ferry-memimage-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  const memory = new Map<number, Buffer>();
  const unreadable = new Set<number>();
  const proc = (ranges: [number, number][]): ProcessPages => ({
    ranges,
    read(first, count, buf) {
      for (let i = 0; i < count; i++) {
        if (unreadable.has(first + i)) throw new Error(`page ${(first + i).toString(16)} unmapped`);
        (memory.get(first + i) ?? assert.fail(`page ${(first + i).toString(16)} read but not in memory`)).copy(buf, i * PAGE_SIZE);
      }
    },
  });
  // Round 0: two processes, everything they hold.
  for (const p of [0x10, 0x11, 0x12, 0x13, 0x20, 0x21]) memory.set(p, page(p));
  memory.set(0x50, page(0x50));
  const r0 = await writeMemoryImage({ out: join(base, '0'), processes: new Map([['1', proc([[0x10, 0x14], [0x20, 0x22]])], ['7', proc([[0x50, 0x51]])]]) });
  assert.deepEqual([r0.pagesTotal, r0.pagesChanged, r0.pagesUnreadable], [7, 7, 0]);
  assert.equal(flat((await readPagemap(join(base, '0/pagemap-1.img'))).entries), `10:4:${PE_PRESENT} 20:2:${PE_PRESENT}`);
  assert.deepEqual(readFileSync(join(base, '0/pages-1.img')), Buffer.concat([0x10, 0x11, 0x12, 0x13, 0x20, 0x21].map(page)));
  assert.equal(existsSync(join(base, '0/parent')), false);

  // Round 1: 0x11 and 0x21 written, a new page 0x30 (beyond what round 0 covered) and 0x12, which
  // went away while it was read; process 7 wrote nothing.
  memory.set(0x11, page(0x71)); memory.set(0x21, page(0x81)); memory.set(0x30, page(0x30));
  unreadable.add(0x12);
  const r1 = await writeMemoryImage({ out: join(base, '1'), previous: join(base, '0'), parentLink: '../0', processes: new Map([['1', proc([[0x11, 0x13], [0x21, 0x22], [0x30, 0x31]])], ['7', proc([])]]) });
  assert.deepEqual([r1.pagesTotal, r1.pagesChanged, r1.pagesUnreadable], [8, 3, 1]);
  assert.equal(flat((await readPagemap(join(base, '1/pagemap-1.img'))).entries), `10:1:${PE_PARENT} 11:1:${PE_PRESENT} 12:2:${PE_PARENT} 20:1:${PE_PARENT} 21:1:${PE_PRESENT} 30:1:${PE_PRESENT}`);
  assert.equal(flat((await readPagemap(join(base, '1/pagemap-7.img'))).entries), `50:1:${PE_PARENT}`);
  assert.equal(readlinkSync(join(base, '1/parent')), '../0');
  // Flattened (the layout grew: copied), it holds memory as it is now; the page that could not be read keeps its old bytes.
  const f1 = await flattenImage(join(base, '1'), join(base, '1.flat'), { consumeParent: true });
  assert.match(f1.copiedWhy ?? '', /^pagemap-1.img: its pages/);
  assert.deepEqual(readFileSync(join(base, '1.flat/pages-1.img')), Buffer.concat([page(0x10), page(0x71), page(0x12), page(0x13), page(0x20), page(0x81), page(0x30)]));
  assert.deepEqual(readFileSync(join(base, '1.flat/pages-7.img')), page(0x50));

  // Round 2 over the flat round 1, inside its layout: the parent's pages file is patched in place.
  memory.set(0x13, page(0x93));
  rmSync(join(base, '0'), { recursive: true });
  cpSync(join(base, '1.flat'), join(base, '0'), { recursive: true });
  const r2 = await writeMemoryImage({ out: join(base, '2'), previous: join(base, '0'), parentLink: '../0', processes: new Map([['1', proc([[0x13, 0x14]])]]) });
  assert.deepEqual([r2.pagesTotal, r2.pagesChanged], [7, 1]);
  const f2 = await flattenImage(join(base, '2'), join(base, '2.flat'), { consumeParent: true });
  assert.equal(f2.patchedParent, true);
  assert.deepEqual(readFileSync(join(base, '2.flat/pages-1.img')), Buffer.concat([page(0x10), page(0x71), page(0x12), page(0x93), page(0x20), page(0x81), page(0x30)]));

  // Bad input: not a pid id, a previous that is not flat, a non-empty out; nothing is left half-written.
  await assert.rejects(writeMemoryImage({ out: join(base, 'x'), processes: new Map([['a', proc([])]]) }), /pagemap id "a" is not a number/);
  assert.equal(existsSync(join(base, 'x')), false);
  await assert.rejects(writeMemoryImage({ out: join(base, 'y'), previous: join(base, '1'), parentLink: '../1', processes: new Map([['1', proc([])]]) }), /the previous round is not flat/);
  await assert.rejects(writeMemoryImage({ out: join(base, '2'), processes: new Map() }), (e: unknown) => isFerryError(e, 'INCREMENTAL_OUT_NOT_EMPTY'));
});

test('flattenImage with overlay: the image\'s pages go into its flat parent where it has them, the rest stay its own; nothing is copied', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'ferry-overlay-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  // The last round: pages 0x10–0x13 and 0x20–0x21. The final image: 0x08 (new, lazy), 0x11 changed,
  // 0x10 and 0x12 unchanged, 0x13 gone, 0x20–0x21 unchanged, 0x22 new; a run without bytes kept as is.
  writeImage(join(base, '2'), [{ at: 0x10, pages: [page(1), page(2), page(3), page(4)], flags: PE_PRESENT }, { at: 0x20, pages: [page(5), page(6)], flags: PE_PRESENT }]);
  writeImage(join(base, 'final'), [
    { at: 0x08, pages: [page(0x88)], flags: PE_PRESENT | PE_LAZY },
    { at: 0x10, pages: [Buffer.alloc(0)], flags: PE_PARENT | PE_LAZY },
    { at: 0x11, pages: [page(0x91)], flags: PE_PRESENT | PE_LAZY },
    { at: 0x12, pages: [Buffer.alloc(0)], flags: PE_PARENT | PE_LAZY },
    { at: 0x20, pages: [page(0xa0), page(0xa1), page(0xa2)], flags: PE_PRESENT },
    { at: 0x30, pages: [Buffer.alloc(0)], flags: 0 },
  ], '../2');
  const s = await flattenImage(join(base, 'final'), join(base, 'final.flat'), { consumeParent: true, overlay: true });
  assert.deepEqual([s.pages, s.pagesWritten, s.patchedParent, s.overlaid], [7, 5, true, true]);
  assert.equal(readlinkSync(join(base, 'final.flat/parent')), '../2');
  assert.equal(flat((await readPagemap(join(base, 'final.flat/pagemap-1.img'))).entries), `8:1:${PE_PRESENT | PE_LAZY} 10:3:${PE_PARENT | PE_LAZY} 20:2:${PE_PARENT} 22:1:${PE_PRESENT} 30:1:0`);
  assert.deepEqual(readFileSync(join(base, 'final.flat/pages-1.img')), Buffer.concat([page(0x88), page(0xa2)]));
  assert.deepEqual(readFileSync(join(base, '2/pages-1.img')), Buffer.concat([page(1), page(0x91), page(3), page(4), page(0xa0), page(0xa1)]));
  assert.equal(readFileSync(join(base, 'final.flat/core-1.img'), 'utf8'), 'core');
  // Resolved through its parent, it holds the final image's memory.
  const f = await flattenImage(join(base, 'final.flat'), join(base, 'resolved'));
  assert.deepEqual(readFileSync(join(base, 'resolved/pages-1.img')), Buffer.concat([page(0x88), page(1), page(0x91), page(3), page(0xa0), page(0xa1), page(0xa2)]));
  assert.equal(f.pages, 7);

  // 'when-layout-changed' overlays only when the layout changed (it did here), else patches as consumeParent does.
  rmSync(join(base, 'final.flat'), { recursive: true });
  const w = await flattenImage(join(base, 'final'), join(base, 'final.flat'), { consumeParent: true, overlay: 'when-layout-changed' });
  assert.equal(w.overlaid, true);
  assert.match(w.copiedWhy ?? '', /^pagemap-1.img: runs without bytes/);
  writeImage(join(base, '3'), [{ at: 0x10, pages: [page(1), page(2)], flags: PE_PRESENT }]);
  writeImage(join(base, 'same'), [{ at: 0x10, pages: [Buffer.alloc(0)], flags: PE_PARENT | PE_LAZY }, { at: 0x11, pages: [page(0x92)], flags: PE_PRESENT | PE_LAZY }], '../3');
  const same = await flattenImage(join(base, 'same'), join(base, 'same.flat'), { consumeParent: true, overlay: 'when-layout-changed' });
  assert.deepEqual([same.overlaid, same.patchedParent, same.copiedWhy], [undefined, true, undefined]);
  assert.equal(flat((await readPagemap(join(base, 'same.flat/pagemap-1.img'))).entries), `10:2:${PE_PRESENT | PE_LAZY}`, 'flat, lazy as the image says (the parent had no lazy flags)');
  assert.deepEqual(readFileSync(join(base, 'same.flat/pages-1.img')), Buffer.concat([page(1), page(0x92)]));
  assert.equal(existsSync(join(base, 'same.flat/parent')), false);

  // A PE_PARENT page the parent does not hold: refused, nothing left.
  writeImage(join(base, 'bad'), [{ at: 0x40, pages: [Buffer.alloc(0)], flags: PE_PARENT }], '../2');
  await assert.rejects(flattenImage(join(base, 'bad'), join(base, 'bad.flat'), { consumeParent: true, overlay: true }), /page 0x40000 is in no image of its parent chain/);
  assert.equal(existsSync(join(base, 'bad.flat')), false);
});
