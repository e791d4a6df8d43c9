import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decideRestart, backoffMs, MAX_BACKOFF_MS } from './restart.ts';

test('no: never restarts; a failure is failed, a success exited', () => {
  assert.deepEqual(decideRestart({ policy: 'no', maxRetries: 0 }, 0, 0, 0).action, 'stay');
  const d = decideRestart({ policy: 'no', maxRetries: 0 }, 3, 0, 0);
  assert.equal(d.action === 'stay' && d.phase, 'failed');
});

test('on-failure: restarts failures up to max, never successes', () => {
  const p = { policy: 'on-failure' as const, maxRetries: 2 };
  assert.equal(decideRestart(p, 0, 0, 0).action, 'stay');
  assert.equal(decideRestart(p, 1, 0, 0).action, 'restart');
  assert.equal(decideRestart(p, 1, 1, 1).action, 'restart');
  const d = decideRestart(p, 1, 2, 2);
  assert.equal(d.action, 'stay');
  assert.match(d.message, /gave up after 2 restarts/);
  assert.equal(decideRestart({ policy: 'on-failure', maxRetries: 0 }, 9, 100, 3).action, 'restart');
});

test('always: restarts even a success, with exponential backoff capped', () => {
  const d0 = decideRestart({ policy: 'always', maxRetries: 0 }, 0, 0, 0);
  const d3 = decideRestart({ policy: 'always', maxRetries: 0 }, 0, 5, 3);
  assert.equal(d0.action === 'restart' && d0.delayMs, 100);
  assert.equal(d3.action === 'restart' && d3.delayMs, 800);
  assert.equal(backoffMs(50), MAX_BACKOFF_MS);
});
