import { test } from 'node:test';
import assert from 'node:assert/strict';
import { changedPageRanges, intersectPageRanges, mergePageRanges, parseScan, prefetch, subtractPageRanges, type PageReader } from './dirty-track.ts';

test('parseScan: written and untracked ranges per process, gone processes, the totals', () => {
  const scan = parseScan('pid 10\nu 7f0000000000 7f0000002000\nw 400000 402000\nw 7f0000001000 7f0000002000\npid 11\ngone\nend 3 2\n');
  assert.deepEqual(scan, {
    processes: [
      { pid: 10, written: [[0x400000n, 0x402000n], [0x7f0000001000n, 0x7f0000002000n]], untracked: [[0x7f0000000000n, 0x7f0000002000n]], gone: false },
      { pid: 11, written: [], untracked: [], gone: true },
    ],
    writtenPages: 3,
    untrackedPages: 2,
  });
});

test('parseScan: a line it does not know, or an answer without its end, is an error', () => {
  assert.throws(() => parseScan('pid 10\nx 1 2\nend 0 0\n'), /unexpected line "x 1 2"/);
  assert.throws(() => parseScan('pid 10\nw 1000 2000\n'), /without its "end" line/);
});

test('changedPageRanges: written and untracked ranges as sorted, merged page numbers', () => {
  const p = { pid: 1, gone: false, written: [[0x5000n, 0x7000n], [0x1000n, 0x2000n]] as [bigint, bigint][], untracked: [[0x6000n, 0x9000n]] as [bigint, bigint][] };
  assert.deepEqual(changedPageRanges(p), [[1, 2], [5, 9]]);
});

test('mergePageRanges and intersectPageRanges: sorted, merged, adjacent ranges joined, empty ones dropped', () => {
  assert.deepEqual(mergePageRanges([[9, 12], [1, 3]], [[3, 4], [10, 15], [20, 20]]), [[1, 4], [9, 15]]);
  assert.deepEqual(intersectPageRanges([[1, 4], [9, 15]], [[0, 2], [3, 10], [14, 30]]), [[1, 2], [3, 4], [9, 10], [14, 15]]);
  assert.deepEqual(intersectPageRanges([[1, 4]], []), []);
});

test('subtractPageRanges: what of the first list the second does not cover', () => {
  assert.deepEqual(subtractPageRanges([[1, 10], [20, 30]], [[0, 2], [4, 5], [9, 21], [25, 26], [29, 40]]), [[2, 4], [5, 9], [21, 25], [26, 29]]);
  assert.deepEqual(subtractPageRanges([[1, 10]], []), [[1, 10]]);
  assert.deepEqual(subtractPageRanges([], [[1, 10]]), []);
  assert.deepEqual(subtractPageRanges([[1, 3], [5, 7]], [[1, 7]]), []);
  assert.deepEqual(subtractPageRanges([[1, 3], [5, 7]], [[3, 5]]), [[1, 3], [5, 7]], 'touching is not overlapping');
});

test('prefetch: the ranges are read once, now; reads inside them come from memory, others go through', () => {
  const calls: string[] = [];
  let generation = 1;
  const read: PageReader = (first, count, buf) => {
    calls.push(`${first}+${count}`);
    for (let i = 0; i < count; i++) buf.fill(first + i + 16 * generation, i * 4096, (i + 1) * 4096);
  };
  const r = prefetch(read, [[2, 4], [10, 11]]);
  assert.deepEqual(calls, ['2+2', '10+1']);
  generation = 2; // memory "changes" after the prefetch: held pages keep what was read
  const buf = Buffer.alloc(2 * 4096);
  r(3, 1, buf);
  r(10, 1, buf.subarray(4096));
  assert.deepEqual([buf[0], buf[4096]], [3 + 16, 10 + 16]);
  r(5, 2, buf); // not held: read now
  assert.deepEqual([calls.at(-1), buf[0], buf[4096]], ['5+2', 5 + 32, 6 + 32]);
  r(3, 2, buf); // straddles the end of a held range: read now
  assert.equal(calls.at(-1), '3+2');
});
