/**
 * Container root filesystems for real: overlay mounts (and the copy fallback) over two layers with
 * whiteouts and an opaque dir, mount records, in-use protection, and release leaving nothing behind.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { isFerryError } from '../../errors/index.ts';
import { probeOverlay } from './mounts.ts';
import { anyMountUnder, makeOciLayout, makeTar, newStore, prerequisite, SHIFT, tempDir } from './testkit.ts';
import type { LocalImageStore } from './store.ts';

const asRoot = process.getuid?.() === 0;

/** A layout of two layers: the second deletes `a` and `e/`, makes `d/` opaque and adds files. */
async function whiteoutImage(t: TestContext, store: LocalImageStore): Promise<string> {
  const dir = await tempDir(t, 'wh');
  const lower = await makeTar([
    { name: 'a', content: 'a' },
    { name: 'd/', type: 'directory' },
    { name: 'd/x', content: 'x' },
    { name: 'd/y', content: 'y' },
    { name: 'e/', type: 'directory' },
    { name: 'e/f', content: 'f' },
    { name: 'keep', content: 'keep' },
    { name: 'link', type: 'symlink', linkname: 'keep' },
  ]);
  const upper = await makeTar([
    { name: '.wh.a' },
    { name: 'd/', type: 'directory', mode: 0o750 },
    { name: 'd/.wh..wh..opq' },
    { name: 'd/z', content: 'z' },
    { name: '.wh.e' },
    { name: 'new', content: 'new' },
    { name: 'keep', content: 'kept, changed' },
  ]);
  await makeOciLayout(dir, [{ ref: 'wh', layers: [lower, upper] }]);
  return (await store.import(dir, { name: 'wh' })).id;
}

/** Checks the merged view of whiteoutImage. */
async function assertMergedView(rootfs: string): Promise<void> {
  assert.deepEqual((await readdir(rootfs)).sort(), ['d', 'keep', 'link', 'new']);
  assert.deepEqual(await readdir(join(rootfs, 'd')), ['z'], 'opaque dir hides the lower d/x, d/y');
  assert.equal((await stat(join(rootfs, 'd'))).mode & 0o777, 0o750);
  assert.equal(await readFile(join(rootfs, 'keep'), 'utf8'), 'kept, changed');
  assert.equal(await readFile(join(rootfs, 'link'), 'utf8'), 'kept, changed');
  const st = await stat(rootfs);
  assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [SHIFT.hostId, SHIFT.hostId, 0o755]);
}

test('overlay: whiteouts and opaque dirs across layers; writes land in upper; release unmounts', async (t) => {
  if (!prerequisite(t, asRoot, 'root')) return;
  const scratch = await tempDir(t, 'probe');
  if (!prerequisite(t, await probeOverlay(join(scratch, 'p'), () => undefined), 'overlayfs')) return;
  const { store, root } = await newStore(t);
  const id = await whiteoutImage(t, store);
  const dir = join(await tempDir(t, 'ctr'), 'c1');
  const p = await store.prepareRootfs('c1', 'wh', dir);
  t.after(() => store.releaseRootfs('c1', dir).catch(() => undefined));
  assert.equal(p.mode, 'overlay');
  assert.equal(p.path, join(dir, 'rootfs'));
  assert.equal(p.image.id, id);
  assert.ok(await anyMountUnder(p.path));
  await assertMergedView(p.path);
  // the upper layer holds the markers overlayfs reads
  const upperLayer = (await readdir(join(root, 'layers'))).map((h) => join(root, 'layers', h, 'rootfs')).find((d) => existsSync(join(d, 'new')))!;
  const wh = await lstat(join(upperLayer, 'a'));
  assert.ok(wh.isCharacterDevice() && wh.rdev === 0, 'whiteout is a 0:0 char device');
  const xattr = await promisify(execFile)('python3', ['-c', 'import os,sys; print(os.getxattr(sys.argv[1], "trusted.overlay.opaque").decode())', join(upperLayer, 'd')]);
  assert.equal(xattr.stdout.trim(), 'y');

  await writeFile(join(p.path, 'written'), 'w');
  assert.equal(await readFile(join(dir, 'upper', 'written'), 'utf8'), 'w');
  assert.equal(existsSync(join(upperLayer, 'written')), false, 'shared layers stay untouched');
  // preparing again is idempotent
  assert.equal((await store.prepareRootfs('c1', 'wh', dir)).path, p.path);
  await assert.rejects(store.prepareRootfs('c1', 'wh', join(dir, 'elsewhere')), (e: unknown) => isFerryError(e, 'IMAGE_ROOTFS_FAILED'));

  await store.releaseRootfs('c1', dir);
  assert.equal(await anyMountUnder(dir), false, 'nothing mounted after release');
  assert.deepEqual(await readdir(dir), []);
  assert.deepEqual(await readdir(join(root, 'mounts')), []);
  await store.releaseRootfs('c1', dir); // idempotent
});

test('copy fallback gives the same merged view with no mount at all', async (t) => {
  if (!prerequisite(t, asRoot, 'root')) return;
  const { store } = await newStore(t, { rootfsMode: 'copy' });
  await whiteoutImage(t, store);
  const dir = join(await tempDir(t, 'ctr'), 'c2');
  const p = await store.prepareRootfs('c2', 'wh', dir);
  t.after(() => store.releaseRootfs('c2', dir).catch(() => undefined));
  assert.equal(p.mode, 'copy');
  assert.equal(await anyMountUnder(dir), false);
  await assertMergedView(p.path);
  assert.equal((await lstat(join(p.path, 'keep'))).uid, SHIFT.hostId);
  await store.releaseRootfs('c2', dir);
  assert.deepEqual(await readdir(dir), []);
});

test('an image in use cannot be removed unless forced; its layers live until release', async (t) => {
  if (!prerequisite(t, asRoot, 'root')) return;
  const { store, root } = await newStore(t);
  const work = await tempDir(t, 'inuse');
  await makeOciLayout(join(work, 'layout'), [{ ref: 'x', layers: [await makeTar([{ name: 'f', content: 'f' }])] }]);
  const img = await store.import(join(work, 'layout'), { name: 'busy:1' });
  await store.import(join(work, 'layout'), { name: 'busy:2' });
  const dir = join(work, 'c3');
  await store.prepareRootfs('c3', 'busy:1', dir);
  t.after(() => store.releaseRootfs('c3', dir).catch(() => undefined));
  const inUse = (e: unknown) => isFerryError(e, 'IMAGE_IN_USE') && /c3/.test((e as Error).message);
  await assert.rejects(store.remove(img.id), inUse);
  await store.remove('busy:1'); // another tag remains: fine
  await assert.rejects(store.remove('busy:2'), inUse);
  assert.deepEqual((await store.inspect(img.id)).tags, ['busy:2']);
  await store.remove(img.id, { force: true });
  assert.deepEqual(await store.list(), []);
  assert.equal((await readdir(join(root, 'layers'))).length, 1, 'the mounted layer stays');
  assert.equal(await readFile(join(dir, 'rootfs', 'f'), 'utf8'), 'f');
  await store.releaseRootfs('c3', dir);
  assert.deepEqual(await readdir(join(root, 'layers')), [], 'collected after release');
  assert.equal(await anyMountUnder(work), false);
  await assert.rejects(store.prepareRootfs('../x', 'busy', dir), (e: unknown) => isFerryError(e, 'IMAGE_BAD_CONTAINER_ID'));
  await assert.rejects(store.releaseRootfs('a/b', dir), (e: unknown) => isFerryError(e, 'IMAGE_BAD_CONTAINER_ID'));
});

test('a crash mid-prepare is undone by the next prepare; a layer deleted from the cache is unpacked again', async (t) => {
  if (!prerequisite(t, asRoot, 'root')) return;
  const { store, root } = await newStore(t);
  const work = await tempDir(t, 'crash');
  await writeFile(join(work, 'r.tar'), await makeTar([{ name: 'f', content: 'f' }]));
  const img = await store.import(join(work, 'r.tar'), { name: 'c' });
  const dir = join(work, 'c4');
  await writeFile(join(root, 'mounts', 'c4.json'), JSON.stringify({ containerId: 'c4', imageId: img.id, dir, mode: 'copy', layers: [], ready: false }));
  const layers = await readdir(join(root, 'layers'));
  await (await import('node:fs/promises')).rm(join(root, 'layers', layers[0]!), { recursive: true });
  const p = await store.prepareRootfs('c4', 'c', dir);
  t.after(() => store.releaseRootfs('c4', dir).catch(() => undefined));
  assert.equal(await readFile(join(p.path, 'f'), 'utf8'), 'f');
  const rec = JSON.parse(await readFile(join(root, 'mounts', 'c4.json'), 'utf8'));
  assert.equal(rec.ready, true);
  await store.releaseRootfs('c4', dir);
  assert.equal(await anyMountUnder(work), false);
});
