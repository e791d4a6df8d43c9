import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isFerryError } from '../errors/index.ts';
import { formatJoinToken, formatNodeCredential, parseJoinToken, parseNodeCredential } from './join.ts';
import { parseTtl } from './units.ts';

test('join token lifetimes: s, m, h, d; a bare number is seconds; at most a year', () => {
  assert.equal(parseTtl('30m'), 1800);
  assert.equal(parseTtl('2h'), 7200);
  assert.equal(parseTtl('1d'), 86_400);
  assert.equal(parseTtl('1.5h'), 5400);
  assert.equal(parseTtl('90'), 90);
  assert.equal(parseTtl('365d'), 365 * 86_400);
  for (const bad of ['', 'soon', '0', '0s', '1w', '366d', '-1h', '10 ms']) {
    assert.throws(() => parseTtl(bad), (e) => isFerryError(e, 'BAD_DURATION') && /30m, 2h or 1d/.test((e as Error).message), bad);
  }
});

test('join tokens and node credentials round-trip; anything else is not one', () => {
  const secret = 'Abc_-123456789012345678901234567';
  assert.deepEqual(parseJoinToken(formatJoinToken('0123456789abcdef', secret)), { id: '0123456789abcdef', secret });
  assert.deepEqual(parseNodeCredential(formatNodeCredential('web.eu-1', secret)), { node: 'web.eu-1', secret }, 'node names may hold dots');
  for (const bad of ['', 'fjt', `fjt..${secret}`, `fjt.XYZ.${secret}`, 'fjt.0123456789abcdef.short', `fac.n1.${secret}`, `fjt.0123456789abcdef.${secret}.x`]) {
    assert.equal(parseJoinToken(bad), undefined, bad);
  }
  for (const bad of ['', `fac..${secret}`, `fac.bad name.${secret}`, 'fac.n1.short', `fjt.0123456789abcdef.${secret}`]) {
    assert.equal(parseNodeCredential(bad), undefined, bad);
  }
});
