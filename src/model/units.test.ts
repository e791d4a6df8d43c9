import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isFerryError } from '../errors/index.ts';
import { parseBandwidth } from './units.ts';

test('bandwidths: binary units, optional /s', () => {
  assert.equal(parseBandwidth('50M'), 50 * 1024 * 1024);
  assert.equal(parseBandwidth('50MiB/s'), 50 * 1024 * 1024);
  assert.equal(parseBandwidth('500k'), 500 * 1024);
  assert.equal(parseBandwidth('1.5g'), 1.5 * 1024 ** 3);
  assert.equal(parseBandwidth('4096'), 4096);
  for (const bad of ['', 'fast', '0', '-5M', '10 parsecs', '0.1']) {
    assert.throws(() => parseBandwidth(bad), (e) => isFerryError(e, 'BAD_BANDWIDTH') && /invalid bandwidth/.test((e as Error).message), bad);
  }
});
