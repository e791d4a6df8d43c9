/**
 * Layer unpacking against the real filesystem (as root): links, modes, shifted owners, skipped device
 * nodes, and malicious tars that must be refused without writing anything outside the layer.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, readdir, readFile, readlink, stat, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { gzipSync } from 'node:zlib';
import { isFerryError } from '../../errors/index.ts';
import { makeTar, newStore, prerequisite, tempDir, type FixtureEntry } from './testkit.ts';

const hexOf = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const asRoot = process.getuid?.() === 0;

test('unpacks files, dirs, symlinks, hard links, setuid and mtimes with shifted owners; skips devices', async (t) => {
  if (!prerequisite(t, asRoot, 'root (chown to shifted ids)')) return;
  const logs: string[] = [];
  const { store, root } = await newStore(t, {}, logs);
  const src = await tempDir(t, 'src');
  const when = new Date('2020-01-02T03:04:05Z');
  const layer = await makeTar([
    { name: './', type: 'directory', mode: 0o755 },
    { name: 'bin/', type: 'directory' },
    { name: 'bin/tool', content: 'tool', mode: 0o4755, mtime: when },
    { name: 'bin/tool-again', type: 'link', linkname: 'bin/tool' },
    { name: 'bin/sh', type: 'symlink', linkname: '/bin/tool' },
    { name: 'home/user/', type: 'directory', mode: 0o700, uid: 1000, gid: 1000, mtime: when },
    { name: 'home/user/notes', content: 'hi', uid: 1000, gid: 100, mode: 0o640 },
    { name: 'far-away-owner', content: 'x', uid: 70000, gid: 70000 },
    { name: 'dev/null', type: 'character-device' },
    { name: 'dev/sda', type: 'block-device' },
    { name: 'pipe', type: 'fifo' },
    { name: 'implicit/parent/file', content: 'deep' },
  ]);
  for (const gzip of [false, true]) {
    const file = join(src, gzip ? 'layer.tar.gz' : 'layer.tar');
    await writeFile(file, gzip ? gzipSync(layer) : layer);
    const img = await store.import(file, { name: `fx:${gzip ? 'gz' : 'plain'}` });
    assert.equal(img.tags[0], `fx:${gzip ? 'gz' : 'plain'}`);
  }
  const dir = join(root, 'layers', hexOf(layer), 'rootfs');
  const tool = await stat(join(dir, 'bin/tool'));
  assert.equal(tool.mode & 0o7777, 0o4755, 'setuid kept after chown');
  assert.equal(tool.uid, 100000);
  assert.equal(tool.mtime.getTime(), when.getTime());
  const again = await stat(join(dir, 'bin/tool-again'));
  assert.equal(again.ino, tool.ino, 'hard link shares the inode');
  assert.equal(tool.nlink, 2);
  assert.equal(await readlink(join(dir, 'bin/sh')), '/bin/tool');
  assert.equal((await lstat(join(dir, 'bin/sh'))).uid, 100000);
  const home = await stat(join(dir, 'home/user'));
  assert.deepEqual([home.uid, home.gid, home.mode & 0o7777, home.mtime.getTime()], [101000, 101000, 0o700, when.getTime()]);
  const notes = await stat(join(dir, 'home/user/notes'));
  assert.deepEqual([notes.uid, notes.gid, notes.mode & 0o777], [101000, 100100, 0o640]);
  const far = await stat(join(dir, 'far-away-owner'));
  assert.deepEqual([far.uid, far.gid], [165534, 165534], 'ids beyond the range map to nobody');
  assert.equal(await readFile(join(dir, 'implicit/parent/file'), 'utf8'), 'deep');
  assert.equal((await stat(join(dir, 'implicit'))).uid, 100000);
  assert.equal(existsSync(join(dir, 'dev/null')) || existsSync(join(dir, 'dev/sda')), false, 'device nodes skipped');
  assert.equal(existsSync(join(dir, 'pipe')), false, 'fifo skipped');
  assert.ok(logs.some((l) => l.includes('skipped character-device dev/null')), logs.join('\n'));
  assert.equal((await stat(dir)).uid, 100000);
  // the gzip and plain imports are the same layer: unpacked once
  assert.equal((await readdir(join(root, 'layers'))).length, 1);
});

/** Imports a one-layer rootfs tar that must be refused; returns the error. */
async function expectRefused(t: TestContext, entries: FixtureEntry[], pattern: RegExp): Promise<string> {
  const { store, root } = await newStore(t);
  const src = await tempDir(t, 'evil');
  const file = join(src, 'evil.tar');
  await writeFile(file, await makeTar(entries));
  await assert.rejects(store.import(file, { name: 'evil' }), (e: unknown) => {
    assert.ok(isFerryError(e, 'IMAGE_BAD_ARCHIVE'), String(e));
    assert.match((e as Error).message, pattern);
    return true;
  });
  assert.deepEqual(await readdir(join(root, 'layers')), [], 'no layer left');
  assert.deepEqual(await readdir(join(root, 'blobs', 'sha256')), [], 'no blob left');
  assert.deepEqual((await store.list()).length, 0);
  return root;
}

test('refuses ../ and absolute entry names', async (t) => {
  if (!prerequisite(t, asRoot, 'root')) return;
  const root = await expectRefused(t, [{ name: 'ok', content: '1' }, { name: '../evil', content: 'x' }], /escapes the archive root/);
  assert.equal(existsSync(join(root, 'evil')), false);
  assert.equal(existsSync(join(root, 'tmp', 'evil')), false);
  await expectRefused(t, [{ name: 'a/../../evil', content: 'x' }], /escapes/);
  await expectRefused(t, [{ name: '/evil-ferry-test', content: 'x' }], /absolute path/);
  assert.equal(existsSync('/evil-ferry-test'), false);
});

test('never writes through a symlink, whatever the entry type', async (t) => {
  if (!prerequisite(t, asRoot, 'root')) return;
  const outside = await tempDir(t, 'outside');
  await writeFile(join(outside, 'secret'), 'keep me');
  await expectRefused(t, [{ name: 'a', type: 'symlink', linkname: outside }, { name: 'a/passwd', content: 'pwned' }], /through the symlink a/);
  await expectRefused(t, [{ name: 'a', type: 'symlink', linkname: outside }, { name: 'a/sub/', type: 'directory' }], /through the symlink a/);
  await expectRefused(t, [{ name: 'a', type: 'symlink', linkname: outside }, { name: 'a/new-link', type: 'symlink', linkname: '/x' }], /through the symlink/);
  await expectRefused(t, [{ name: 'a', type: 'symlink', linkname: outside }, { name: 'a/.wh.secret' }], /through the symlink/);
  await expectRefused(t, [{ name: 'a', type: 'symlink', linkname: '..' }, { name: 'a/evil', content: 'x' }], /through the symlink/);
  assert.deepEqual((await readdir(outside)).sort(), ['secret']);
  assert.equal(await readFile(join(outside, 'secret'), 'utf8'), 'keep me');
});

test('refuses hard links that point outside the layer', async (t) => {
  if (!prerequisite(t, asRoot, 'root')) return;
  const outside = await tempDir(t, 'outside');
  await mkdir(join(outside, 'sub'));
  await writeFile(join(outside, 'sub', 'secret'), 'keep me');
  await expectRefused(t, [{ name: 'h', type: 'link', linkname: '../../../../../../etc/passwd' }], /escapes the archive root/);
  await expectRefused(t, [{ name: 'h', type: 'link', linkname: '/etc/passwd' }], /absolute path/);
  await expectRefused(t, [{ name: 'a', type: 'symlink', linkname: join(outside, 'sub') }, { name: 'h', type: 'link', linkname: 'a/secret' }], /hard link h -> a\/secret/);
  await expectRefused(t, [{ name: 'h', type: 'link', linkname: 'missing' }], /target missing/);
  assert.equal((await stat(join(outside, 'sub', 'secret'))).nlink, 1, 'no new link to the outside file');
});

test('a corrupt or truncated layer is refused', async (t) => {
  if (!prerequisite(t, asRoot, 'root')) return;
  const { store } = await newStore(t);
  const src = await tempDir(t, 'bad');
  const good = await makeTar([{ name: 'f', content: 'x'.repeat(5000) }]);
  const gz = gzipSync(good);
  await writeFile(join(src, 'trunc.tar.gz'), gz.subarray(0, gz.length - 20));
  await assert.rejects(store.import(join(src, 'trunc.tar.gz'), { name: 'x' }), (e: unknown) => isFerryError(e, 'IMAGE_BAD_ARCHIVE'));
});
