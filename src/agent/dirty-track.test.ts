import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseScan } from './dirty-track.ts';

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
