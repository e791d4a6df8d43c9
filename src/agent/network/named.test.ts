import { test } from 'node:test';
import assert from 'node:assert/strict';
import { namedBridge, separationRules } from './named.ts';

test('a named network bridge is short enough for the overlay suffixes, stable, and differs per base and name', () => {
  const b = namedBridge('ferry0', 'blue');
  assert.match(b, /^fn[0-9a-f]{8}$/);
  assert.equal(namedBridge('ferry0', 'blue'), b);
  assert.notEqual(namedBridge('ferry0', 'red'), b);
  assert.notEqual(namedBridge('fbabc', 'blue'), b);
});

test('every pair of container bridges is kept apart in both directions, tagged by the incoming bridge', () => {
  const rules = separationRules(['ferry0', 'fn1', 'fn2']);
  assert.equal(rules.length, 12);
  const pairs = rules.map((r) => `${r.spec[1]}>${r.spec[3]}`).sort();
  assert.deepEqual(pairs, [
    'ferry0>fn1', 'ferry0>fn1h', 'ferry0>fn2', 'ferry0>fn2h', 'fn1>ferry0', 'fn1>ferry0h',
    'fn1>fn2', 'fn1>fn2h', 'fn2>ferry0', 'fn2>ferry0h', 'fn2>fn1', 'fn2>fn1h',
  ]);
  for (const r of rules) {
    assert.equal(r.chain, 'FORWARD');
    assert.equal(r.spec.at(-1), 'DROP');
    assert.equal(r.spec[r.spec.indexOf('--comment') + 1], `ferry:${r.spec[1]}`);
  }
  assert.deepEqual(separationRules(['ferry0']), []);
});
