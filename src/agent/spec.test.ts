import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mergeEnv, processArgs, resolveUser } from './spec.ts';
import { defaultSpec } from '../model/index.ts';

const image = { entrypoint: ['/app/run'], cmd: ['--serve'], env: ['A=1'], workingDir: '/', user: '', exposedPorts: [], labels: {} };

test('args: the spec overrides the image like Docker', () => {
  assert.deepEqual(processArgs(defaultSpec('x'), image, 'x'), ['/app/run', '--serve']);
  assert.deepEqual(processArgs({ ...defaultSpec('x'), command: ['--once'] }, image, 'x'), ['/app/run', '--once']);
  assert.deepEqual(processArgs({ ...defaultSpec('x'), entrypoint: ['/bin/sh'] }, image, 'x'), ['/bin/sh']);
  assert.throws(() => processArgs(defaultSpec('x'), { ...image, entrypoint: [], cmd: [] }, 'x'), /has no entrypoint or cmd/);
});

test('env: later lists win per name', () => {
  assert.deepEqual(mergeEnv(['A=1', 'B=2'], ['A=3'], ['C=']), ['A=3', 'B=2', 'C=']);
});

test('user: names, numbers and groups resolve from the rootfs', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'ferry-spec-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  await mkdir(join(root, 'etc'));
  await writeFile(join(root, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n');
  await writeFile(join(root, 'etc/group'), 'root:x:0:\nstaff:x:50:\n');
  assert.deepEqual(await resolveUser(root, ''), { uid: 0, gid: 0 });
  assert.deepEqual(await resolveUser(root, 'app'), { uid: 1000, gid: 1001 });
  assert.deepEqual(await resolveUser(root, 'app:staff'), { uid: 1000, gid: 50 });
  assert.deepEqual(await resolveUser(root, '42'), { uid: 42, gid: 42 });
  assert.deepEqual(await resolveUser(root, '42:7'), { uid: 42, gid: 7 });
  await assert.rejects(resolveUser(root, 'ghost'), /no user "ghost"/);
  await assert.rejects(resolveUser(root, 'app:nogroup'), /no group "nogroup"/);
  await assert.rejects(resolveUser(root, '70000'), /outside the container user namespace/);
});
