import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isFerryError } from '../../errors/index.ts';
import { createFakeRuntime } from './fake.ts';
import type { BundleSpec } from './types.ts';

const spec = (id: string): BundleSpec => ({
  id, rootfs: '/r', args: ['app'], env: [], cwd: '/', uid: 0, gid: 0, hostname: id, resources: {}, mounts: [], newNetns: false,
});

test('lifecycle: create, start, simulated exit, delete', async () => {
  const rt = createFakeRuntime();
  assert.equal((await rt.create(spec('a'))).status, 'created');
  assert.equal((await rt.start('a')).status, 'running');
  const waiting = rt.waitExit('a');
  rt.exit('a', 3);
  assert.equal((await waiting).exitCode, 3);
  assert.equal((await rt.state('a'))?.status, 'stopped');
  await assert.rejects(rt.start('a'), (e) => isFerryError(e, 'RUNTIME_NOT_RUNNING'));
  await rt.delete('a');
  await rt.delete('a');
  assert.equal(await rt.state('a'), undefined);
  await assert.rejects(rt.waitExit('a'), (e) => isFerryError(e, 'RUNTIME_NOT_FOUND'));
  assert.deepEqual(rt.calls, ['create a', 'start a', 'start a', 'delete a', 'delete a']);
});

test('kill and stop: signals end it, ignored SIGTERM escalates to SIGKILL', async () => {
  const rt = createFakeRuntime();
  await rt.create(spec('a'));
  await rt.start('a');
  await rt.kill('a', 'TERM');
  assert.deepEqual([(await rt.state('a'))?.exit?.exitCode, (await rt.state('a'))?.exit?.signal], [143, 'SIGTERM']);
  await rt.create(spec('b'));
  await rt.start('b');
  rt.ignoreSignals('b', ['SIGTERM']);
  const exit = await rt.stop('b', 10);
  assert.deepEqual([exit?.exitCode, exit?.signal], [137, 'SIGKILL']);
  assert.deepEqual(rt.inspect('b')?.signals, ['SIGTERM', 'SIGKILL']);
  assert.equal(await rt.stop('missing', 10), undefined);
});

test('failures, exec, logs, stats, update, list', async () => {
  const rt = createFakeRuntime();
  rt.failNextCreate('no such image');
  await assert.rejects(rt.create(spec('a')), (e) => isFerryError(e, 'RUNTIME_CREATE_FAILED') && /no such image/.test(e.message));
  await rt.create(spec('a'));
  await assert.rejects(rt.create(spec('a')), (e) => isFerryError(e, 'RUNTIME_CREATE_FAILED'));
  await assert.rejects(rt.exec('a', { args: ['x'], onStdout: () => undefined, onStderr: () => undefined }), (e) => isFerryError(e, 'RUNTIME_NOT_RUNNING'));
  await rt.start('a');
  rt.onExec(() => ({ exitCode: 5, stdout: 'hi\n' }));
  let out = '';
  assert.equal(await rt.exec('a', { args: ['x'], onStdout: (b) => { out += new TextDecoder().decode(b); }, onStderr: () => undefined }), 5);
  assert.equal(out, 'hi\n');
  await rt.update('a', { memoryBytes: 1024 });
  assert.equal((await rt.stats('a')).memoryLimitBytes, 1024);
  rt.setStats('a', { cpuUsageNs: 7 });
  assert.equal((await rt.stats('a')).cpuUsageNs, 7);
  rt.emit('a', 'stdout', 'one');
  const lines: string[] = [];
  const follow = (async () => { for await (const e of rt.logs('a', { follow: true })) lines.push(e.line); })();
  rt.emit('a', 'stderr', 'two');
  rt.exit('a', 0);
  await follow;
  assert.deepEqual(lines, ['one', 'two']);
  const tail: string[] = [];
  for await (const e of rt.logs('a', { tail: 1 })) tail.push(e.line);
  assert.deepEqual(tail, ['two']);
  assert.deepEqual((await rt.list()).map((s) => s.id), ['a']);
});
