import { test } from 'node:test';
import assert from 'node:assert/strict';
import { autoStrategy, chooseStrategy, precopyDone } from './strategy.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const link = 1000 * MiB; // ~10 GbE worth of loopback

test('auto: small containers go stop-copy', () => {
  const c = chooseStrategy({ memoryBytes: 64 * MiB, dirtyBytesPerSec: 10 * MiB, bandwidthBytesPerSec: link });
  assert.equal(c.strategy, 'stop-copy');
  assert.match(c.reason, /small/);
});

test('auto: a big, mostly idle container goes pre-copy when the final delta is short', () => {
  const c = chooseStrategy({ memoryBytes: GiB, dirtyBytesPerSec: 0.01 * GiB, bandwidthBytesPerSec: link });
  assert.equal(c.strategy, 'pre-copy');
  assert.ok(c.estimatesMs['pre-copy'] < c.estimatesMs['stop-copy']);
});

test('auto: unknown dirty rate is treated as the worst case', () => {
  const c = chooseStrategy({ memoryBytes: GiB, bandwidthBytesPerSec: link });
  assert.equal(c.strategy, 'stop-copy');
  assert.match(c.reason, /unknown/);
});

test('auto: a slow link and a quiet workload favour post-copy', () => {
  const c = chooseStrategy({ memoryBytes: 4 * GiB, dirtyBytesPerSec: 0.002 * 4 * GiB, bandwidthBytesPerSec: 50 * MiB });
  assert.equal(c.strategy, 'post-copy');
});

test('auto: memory rewritten faster than the link ends in stop-copy', () => {
  const c = chooseStrategy({ memoryBytes: GiB, dirtyBytesPerSec: 800 * MiB, bandwidthBytesPerSec: link });
  assert.equal(c.strategy, 'stop-copy');
  assert.match(c.reason, /faster than the link/);
});

test('pre-copy stops on the freeze goal, the round limit, or when deltas stop shrinking', () => {
  const goal = { targetFreezeMs: 100, bandwidthBytesPerSec: link, maxRounds: 5 };
  assert.equal(precopyDone([], goal).done, false);
  assert.equal(precopyDone([{ sentBytes: GiB, durationMs: 1000 }], goal).done, false);
  assert.equal(precopyDone([{ sentBytes: GiB, durationMs: 1000 }, { sentBytes: 50 * MiB, durationMs: 60 }], goal).done, true);
  const flat = precopyDone([{ sentBytes: 500 * MiB, durationMs: 500 }, { sentBytes: 499 * MiB, durationMs: 500 }], goal);
  assert.deepEqual([flat.done, /stopped shrinking/.test(flat.reason)], [true, true]);
  const many = Array.from({ length: 5 }, (_, i) => ({ sentBytes: (600 - i * 100) * MiB, durationMs: 100 }));
  assert.match(precopyDone(many, goal).reason, /round limit/);
});

test('auto with measured writes and link: pre-copy when it converges (safer), post-copy on a slow link, stop-copy when nothing else ends', () => {
  const quiet = autoStrategy({ memoryBytes: GiB, postCopyAllowed: true, dirtyBytesPerSec: 1 * MiB, bandwidthBytesPerSec: link });
  assert.equal(quiet.strategy, 'pre-copy');
  assert.match(quiet.reason, /^auto: 1 GiB in memory, written at 1 MiB\/s, well under the link \(1000 MiB\/s\): pre-copy converges, freeze ~551 ms/);
  const slow = autoStrategy({ memoryBytes: 4 * GiB, postCopyAllowed: true, dirtyBytesPerSec: 8 * MiB, bandwidthBytesPerSec: 50 * MiB });
  assert.equal(slow.strategy, 'post-copy', slow.reason);
  // The same on a target without userfaultfd: pre-copy still converges.
  assert.equal(autoStrategy({ memoryBytes: 4 * GiB, postCopyAllowed: false, dirtyBytesPerSec: 8 * MiB, bandwidthBytesPerSec: 50 * MiB }).strategy, 'pre-copy');
  const heavy = autoStrategy({ memoryBytes: GiB, postCopyAllowed: true, dirtyBytesPerSec: 600 * MiB, bandwidthBytesPerSec: link });
  assert.deepEqual([heavy.strategy, /faster than the link can follow/.test(heavy.reason)], ['stop-copy', true]);
  // Small ones are not measured at all: stop-copy.
  assert.equal(autoStrategy({ memoryBytes: 200 * MiB, postCopyAllowed: true, dirtyBytesPerSec: 600 * MiB, bandwidthBytesPerSec: link }).strategy, 'stop-copy');
});

test('auto without measurements: stop-copy while small, post-copy when large and the target allows it', () => {
  const MiB = 1024 * 1024;
  assert.equal(autoStrategy({ memoryBytes: 64 * MiB, postCopyAllowed: true }).strategy, 'stop-copy');
  assert.equal(autoStrategy({ memoryBytes: 256 * MiB, postCopyAllowed: true }).strategy, 'stop-copy');
  const big = autoStrategy({ memoryBytes: 1024 * MiB, postCopyAllowed: true });
  assert.deepEqual([big.strategy, /auto: 1 GiB in memory, its writes not measured/.test(big.reason)], ['post-copy', true]);
  // A container of a few hundred KiB is not "0 MiB".
  assert.match(autoStrategy({ memoryBytes: 423 * 1024, postCopyAllowed: true }).reason, /^auto: 423 KiB in memory: stop-copy/);
  assert.match(autoStrategy({ memoryBytes: 1024 * MiB, postCopyAllowed: false }).reason, /does not allow userfaultfd/);
  assert.equal(autoStrategy({ memoryBytes: 1024 * MiB, postCopyAllowed: false }).strategy, 'stop-copy');
  assert.match(autoStrategy({ postCopyAllowed: true }).reason, /unknown/);
});
