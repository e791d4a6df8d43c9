import { test } from 'node:test';
import assert from 'node:assert/strict';
import { exitCodeFromStatus, isNotExist, isNotRunning, normaliseSignal, runcMessage, signalNumber } from './runc-cli.ts';

test('runcMessage picks the error out of JSON, logfmt and plain output', () => {
  assert.equal(runcMessage('{"level":"warning","msg":"x"}\n{"level":"error","msg":"container does not exist","time":"t"}\n'), 'container does not exist');
  assert.equal(runcMessage('time="t" level=error msg="unable to \\"start\\""\n'), 'unable to "start"');
  assert.equal(runcMessage('runc create failed: boom\n'), 'runc create failed: boom');
  assert.equal(runcMessage(''), 'no error message');
  assert.ok(isNotExist('container does not exist'));
  assert.ok(isNotRunning('container not running'));
});

test('signals and exit codes', () => {
  assert.equal(signalNumber('SIGKILL'), 9);
  assert.equal(signalNumber('term'), 15);
  assert.equal(exitCodeFromStatus(null, 'SIGKILL'), 137);
  assert.equal(exitCodeFromStatus(3, null), 3);
  assert.equal(normaliseSignal('term'), 'SIGTERM');
  assert.equal(normaliseSignal('9'), 'SIGKILL');
  assert.equal(normaliseSignal('NOPE'), undefined);
});
