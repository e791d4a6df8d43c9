/** Where an agent keeps migration files: the scratch tmpfs rule (the real placement runs in test/migration.test.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { defaultScratchDir, fitsScratch, isTmpfs, LAZY_RESTORE_MIN_BYTES, lazyRestoreFits } from './migrate.ts';

const MiB = 1048576;

test('fitsScratch: the expected size with a quarter and 64 MiB to spare; an unknown size never', () => {
  assert.equal(fitsScratch(1344 * MiB, 1024 * MiB), true, '1 GiB × 1.25 + 64 MiB = 1344 MiB fits exactly');
  assert.equal(fitsScratch(1343 * MiB, 1024 * MiB), false);
  assert.equal(fitsScratch(64 * MiB, 0), true, 'a post-copy image (no pages) needs only the spare');
  assert.equal(fitsScratch(63 * MiB, 0), false);
  assert.equal(fitsScratch(Number.MAX_SAFE_INTEGER, undefined), false, 'unknown size: the data directory');
});

test('defaultScratchDir: one directory per data directory on /dev/shm, when that is a tmpfs', () => {
  const tmpfs = readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === '/dev/shm' && l.split(' ')[2] === 'tmpfs');
  assert.equal(isTmpfs('/dev/shm'), tmpfs, 'statfs agrees with the mount table');
  assert.equal(isTmpfs('/no/such/dir'), false);
  const a = defaultScratchDir('/var/lib/ferry/agents/a');
  if (!tmpfs) {
    assert.equal(a, undefined, 'no tmpfs at /dev/shm: no scratch directory');
    return;
  }
  assert.match(a ?? '', /^\/dev\/shm\/ferry-[0-9a-f]{12}$/);
  assert.equal(defaultScratchDir('/var/lib/ferry/agents/a'), a, 'stable across restarts');
  assert.notEqual(defaultScratchDir('/var/lib/ferry/agents/b'), a, 'two agents on one host do not share one');
});

test('lazyRestoreFits: big images restore lazily where userfaultfd is allowed; 0 turns it off', () => {
  assert.equal(LAZY_RESTORE_MIN_BYTES, 128 * MiB);
  assert.equal(lazyRestoreFits(1024 * MiB, LAZY_RESTORE_MIN_BYTES, true), true);
  assert.equal(lazyRestoreFits(128 * MiB, LAZY_RESTORE_MIN_BYTES, true), true, 'from the threshold on');
  assert.equal(lazyRestoreFits(64 * MiB, LAZY_RESTORE_MIN_BYTES, true), false, 'small: filling it first is as quick');
  assert.equal(lazyRestoreFits(1024 * MiB, LAZY_RESTORE_MIN_BYTES, false), false, 'no userfaultfd in user namespaces: plain restore');
  assert.equal(lazyRestoreFits(1024 * MiB, 0, true), false, '0: never');
});
