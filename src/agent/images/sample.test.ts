/**
 * The built-in sample image: built without network from busybox + sample-app, deterministic, and a
 * root filesystem that actually runs busybox under chroot.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { lstat, readdir, readFile, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { isFerryError } from '../../errors/index.ts';
import { anyMountUnder, have, newStore, prerequisite, sampleAppBinary, SHIFT, tempDir } from './testkit.ts';

const asRoot = process.getuid?.() === 0;

test('ensureSample builds sample:latest once, deterministically, with the documented config', async (t) => {
  if (!prerequisite(t, asRoot, 'root')) return;
  if (!prerequisite(t, await have('gcc'), 'gcc (to build sample-app)')) return;
  if (!prerequisite(t, await have('/bin/busybox', ['true']), 'busybox-static at /bin/busybox')) return;
  const app = await sampleAppBinary();
  const { store, root } = await newStore(t, { sampleAppPath: app });
  const img = await store.ensureSample();
  assert.deepEqual(img.tags, ['sample:latest']);
  assert.deepEqual(img.config.entrypoint, ['/app/sample-app']);
  assert.deepEqual(img.config.cmd, []);
  assert.deepEqual(img.config.env, ['PATH=/usr/sbin:/usr/bin:/sbin:/bin']);
  assert.deepEqual(img.config.exposedPorts, ['80/tcp']);
  assert.equal(img.config.workingDir, '/');
  assert.equal(img.created, '2024-01-01T00:00:00Z');
  const blobs = (await readdir(join(root, 'blobs/sha256'))).sort();
  assert.equal((await store.ensureSample()).id, img.id);
  assert.deepEqual((await readdir(join(root, 'blobs/sha256'))).sort(), blobs, 'second call builds nothing');
  const other = await newStore(t, { sampleAppPath: app });
  assert.equal((await other.store.ensureSample()).id, img.id, 'same binaries, same digest');

  const missing = await newStore(t, { sampleAppPath: '/nonexistent/sample-app' });
  await assert.rejects(missing.store.ensureSample(), (e: unknown) => isFerryError(e, 'IMAGE_SAMPLE_UNAVAILABLE') && /scripts\/setup/.test((e as Error).message));
});

test('the sample rootfs has busybox, its applets, the app, passwd/group and the usual dirs', async (t) => {
  if (!prerequisite(t, asRoot, 'root')) return;
  if (!prerequisite(t, await have('gcc'), 'gcc (to build sample-app)')) return;
  const { store } = await newStore(t, { sampleAppPath: await sampleAppBinary() });
  await store.ensureSample();
  await store.warmUp(); // the overlay probe, as the agent runs it at start
  const dir = join(await tempDir(t, 'ctr'), 'sample1');
  const p = await store.prepareRootfs('sample1', 'sample', dir);
  t.after(() => store.releaseRootfs('sample1', dir).catch(() => undefined));
  assert.equal(p.mode, 'overlay', 'the probe found overlayfs usable (it is on every Ferry host so far)');
  const r = p.path;
  const bb = await stat(join(r, 'bin/busybox'));
  assert.ok(bb.isFile() && (bb.mode & 0o111) !== 0);
  assert.equal(bb.uid, SHIFT.hostId);
  for (const applet of ['bin/sh', 'bin/ls', 'bin/cat', 'bin/echo', 'bin/sleep', 'bin/ps', 'usr/bin/wget', 'bin/nc']) {
    const target = await readlink(join(r, applet)).catch(() => readlink(join(r, applet.replace(/^bin/, 'usr/bin'))));
    assert.equal(target, '/bin/busybox', applet);
  }
  assert.ok((await stat(join(r, 'app/sample-app'))).mode & 0o100);
  assert.match(await readFile(join(r, 'etc/passwd'), 'utf8'), /^root:x:0:0:.*\nnobody:x:65534:65534:/);
  assert.match(await readFile(join(r, 'etc/group'), 'utf8'), /^root:x:0:\nnobody:x:65534:/);
  assert.equal((await stat(join(r, 'tmp'))).mode & 0o7777, 0o1777);
  for (const d of ['proc', 'sys', 'dev']) assert.ok((await lstat(join(r, d))).isDirectory(), d);
  const { stdout } = await promisify(execFile)('chroot', [r, '/bin/sh', '-c', 'echo hello from $(cat /etc/hostname 2>/dev/null || echo busybox); ls /app']);
  assert.equal(stdout, 'hello from busybox\nsample-app\n');
  await store.releaseRootfs('sample1', dir);
  assert.equal(await anyMountUnder(dir), false);
});
