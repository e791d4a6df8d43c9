/**
 * Imports of every source format, detected by content; the archive formats are produced from a
 * hand-made OCI layout by skopeo itself. Also refs, remove + garbage collection, and concurrency.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { link, mkdir, readdir, readFile, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { isFerryError } from '../../errors/index.ts';
import { hostArchitecture } from './oci.ts';
import { have, makeOciLayout, makeTar, newStore, prerequisite, REPO, run, SHIFT, tempDir } from './testkit.ts';

const asRoot = process.getuid?.() === 0;
const code = (c: string) => (e: unknown) => {
  assert.ok(isFerryError(e, c), `expected ${c}, got ${String(e)}`);
  return true;
};
const diffHex = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('a rootfs directory becomes a one-layer image (name required)', async (t) => {
  if (!prerequisite(t, asRoot, 'root')) return;
  const { store, root } = await newStore(t);
  const src = await tempDir(t, 'rootfs');
  await mkdir(join(src, 'bin'));
  await writeFile(join(src, 'bin', 'hello'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
  await link(join(src, 'bin', 'hello'), join(src, 'bin', 'hello2'));
  await symlink('hello', join(src, 'bin', 'hi'));
  await assert.rejects(store.import(src), code('IMAGE_NAME_REQUIRED'));
  await assert.rejects(store.import(src, { name: 'Bad Name' }), code('IMAGE_BAD_REF'));
  const img = await store.import(src, { name: 'myroot' });
  assert.deepEqual(img.tags, ['myroot:latest']);
  assert.deepEqual(img.config.cmd, ['/bin/sh']);
  assert.equal(img.config.workingDir, '/');
  assert.equal(img.layers.length, 1);
  for (const ref of ['myroot', 'myroot:latest', img.id, img.id.slice(7, 19), `sha256:${img.id.slice(7, 20)}`, `myroot@${img.id}`]) {
    assert.equal((await store.inspect(ref)).id, img.id, ref);
  }
  await assert.rejects(store.inspect('myroot:other'), code('IMAGE_NOT_FOUND'));
  await assert.rejects(store.inspect('sha256:zz'), code('IMAGE_BAD_REF'));
  await assert.rejects(store.inspect('abc'), code('IMAGE_NOT_FOUND'));
  const layerDir = join(root, 'layers', (await readdir(join(root, 'layers')))[0]!, 'rootfs');
  const a = await stat(join(layerDir, 'bin/hello'));
  assert.equal((await stat(join(layerDir, 'bin/hello2'))).ino, a.ino);
  assert.equal(a.mode & 0o777, 0o755);
  assert.equal(a.uid, SHIFT.hostId);
});

test('an OCI layout directory: by ref name, the only image, or ambiguous', async (t) => {
  if (!prerequisite(t, asRoot, 'root')) return;
  const { store } = await newStore(t);
  const one = await tempDir(t, 'layout1');
  const [id1] = await makeOciLayout(one, [{ ref: 'v1', layers: [await makeTar([{ name: 'a', content: '1' }])] }]);
  const untagged = await store.import(one);
  assert.equal(untagged.id, id1, 'manifest digest kept');
  assert.deepEqual(untagged.tags, [], "a bare ref name like 'v1' is not a name");
  assert.deepEqual((await store.import(one, { name: 'app:v1' })).tags, ['app:v1']);

  const two = await tempDir(t, 'layout2');
  const [, idTwo] = await makeOciLayout(two, [
    { ref: 'one', layers: [await makeTar([{ name: 'a', content: '1' }])] },
    { ref: 'two', layers: [await makeTar([{ name: 'b', content: '2' }])], gzip: true, cmd: ['/two'] },
  ]);
  await assert.rejects(store.import(two), code('IMAGE_AMBIGUOUS'));
  await assert.rejects(store.import(two, { name: 'app:three' }), code('IMAGE_AMBIGUOUS'));
  const picked = await store.import(two, { name: 'app:two' });
  assert.equal(picked.id, idTwo);
  assert.deepEqual(picked.config.cmd, ['/two']);
});

test('a multi-platform image index resolves to this host\'s platform', async (t) => {
  if (!prerequisite(t, asRoot, 'root')) return;
  const { store } = await newStore(t);
  const dir = await tempDir(t, 'multi');
  const [other, mine] = await makeOciLayout(dir, [
    { layers: [await makeTar([{ name: 'arch', content: 'other' }])], cmd: ['/other'] },
    { layers: [await makeTar([{ name: 'arch', content: 'mine' }])], cmd: ['/mine'] },
  ]);
  const idx = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8'));
  const arch = hostArchitecture();
  idx.manifests[0].platform = { os: 'linux', architecture: arch === 'arm64' ? 'amd64' : 'arm64' };
  idx.manifests[1].platform = { os: 'linux', architecture: arch };
  const list = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: idx.manifests });
  const listHex = diffHex(Buffer.from(list));
  await writeFile(join(dir, 'blobs/sha256', listHex), list);
  const top = { mediaType: 'application/vnd.oci.image.index.v1+json', digest: `sha256:${listHex}`, size: list.length, annotations: { 'org.opencontainers.image.ref.name': 'multi:1' } };
  await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [top] }));
  const img = await store.import(dir);
  assert.equal(img.id, mine);
  assert.notEqual(img.id, other);
  assert.deepEqual(img.tags, ['multi:1']);
  assert.deepEqual(img.config.cmd, ['/mine']);
});

test('oci-archive and docker-archive tarballs written by skopeo, plain or gzipped, any file name', async (t) => {
  if (!prerequisite(t, asRoot, 'root')) return;
  if (!prerequisite(t, await have('skopeo'), 'skopeo')) return;
  const { store, root } = await newStore(t);
  const work = await tempDir(t, 'archives');
  const l1 = await makeTar([{ name: 'etc/', type: 'directory' }, { name: 'etc/motd', content: 'hello' }]);
  const l2 = await makeTar([{ name: 'app/', type: 'directory' }, { name: 'app/run', content: 'run', mode: 0o755 }]);
  const layout = join(work, 'layout');
  const [id] = await makeOciLayout(layout, [{ ref: 'v2', layers: [l1, l2], gzip: true, cmd: ['/app/run'] }]);
  await run('skopeo', ['copy', '-q', `oci:${layout}:v2`, `docker-archive:${join(work, 'd.tar')}:shop/web:v2`]);
  await run('skopeo', ['copy', '-q', `oci:${layout}:v2`, `oci-archive:${join(work, 'o.tar')}:v2`]);
  await writeFile(join(work, 'o.zip'), gzipSync(await readFile(join(work, 'o.tar'))));

  const fromDocker = await store.import(join(work, 'd.tar'));
  assert.deepEqual(fromDocker.tags, ['shop/web:v2'], 'RepoTags become tags, in Docker Hub short form');
  assert.deepEqual(fromDocker.config.cmd, ['/app/run']);
  assert.equal(fromDocker.layers.length, 2);
  const fromOci = await store.import(join(work, 'o.tar'), { name: 'web:oci' });
  assert.equal(fromOci.id, id, 'oci-archive keeps the manifest digest');
  const fromGz = await store.import(join(work, 'o.zip'), { name: 'web:gz' });
  assert.equal(fromGz.id, id);
  // All three share the same two unpacked layers (by diff id).
  assert.deepEqual((await readdir(join(root, 'layers'))).sort(), [diffHex(l1), diffHex(l2)].sort());
  assert.equal(await readFile(join(root, 'layers', diffHex(l1), 'rootfs/etc/motd'), 'utf8'), 'hello');
  const tags = (await store.list()).flatMap((i) => i.tags).sort();
  assert.deepEqual(tags, ['shop/web:v2', 'web:gz', 'web:oci']);
});

test('refuses what it cannot trust or read, saying why', async (t) => {
  if (!prerequisite(t, asRoot, 'root')) return;
  const { store, root } = await newStore(t);
  const work = await tempDir(t, 'bad');
  const reason = (re: RegExp) => (e: unknown) => {
    assert.ok(isFerryError(e, 'IMAGE_BAD_ARCHIVE'), String(e));
    assert.match((e as Error).message, re);
    return true;
  };
  await writeFile(join(work, 'junk.tar'), Buffer.alloc(4096, 7));
  await assert.rejects(store.import(join(work, 'junk.tar'), { name: 'x' }), reason(/unknown format/));
  await writeFile(join(work, 'z.tar'), Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(100)]));
  await assert.rejects(store.import(join(work, 'z.tar'), { name: 'x' }), reason(/unsupported compression zstd/));
  await assert.rejects(store.import(join(work, 'nope')), reason(/no such file/));

  const layer = await makeTar([{ name: 'f', content: 'data' }]);
  const missing = join(work, 'missing');
  await makeOciLayout(missing, [{ ref: 'a:b', layers: [layer] }]);
  await unlink(join(missing, 'blobs/sha256', diffHex(layer)));
  await assert.rejects(store.import(missing), reason(/missing blob sha256:/));

  const tampered = join(work, 'tampered');
  await makeOciLayout(tampered, [{ ref: 'a:b', layers: [layer] }]);
  await writeFile(join(tampered, 'blobs/sha256', diffHex(layer)), await makeTar([{ name: 'f', content: 'evil' }]));
  await assert.rejects(store.import(tampered), reason(/digest mismatch/));

  // A layer whose blob is intact but does not match the config's diff id.
  const lying = join(work, 'lying');
  await makeOciLayout(lying, [{ ref: 'a:b', layers: [layer], gzip: true }]);
  const idx = JSON.parse(await readFile(join(lying, 'index.json'), 'utf8'));
  const manifest = JSON.parse(await readFile(join(lying, 'blobs/sha256', idx.manifests[0].digest.slice(7)), 'utf8'));
  const cfgPath = join(lying, 'blobs/sha256', manifest.config.digest.slice(7));
  const cfg = JSON.parse(await readFile(cfgPath, 'utf8'));
  cfg.rootfs.diff_ids = [`sha256:${'0'.repeat(64)}`];
  const cfgBytes = JSON.stringify(cfg);
  const cfgHex = diffHex(Buffer.from(cfgBytes));
  await writeFile(join(lying, 'blobs/sha256', cfgHex), cfgBytes);
  manifest.config = { ...manifest.config, digest: `sha256:${cfgHex}`, size: cfgBytes.length };
  const mBytes = JSON.stringify(manifest);
  await writeFile(join(lying, 'blobs/sha256', diffHex(Buffer.from(mBytes))), mBytes);
  idx.manifests[0] = { ...idx.manifests[0], digest: `sha256:${diffHex(Buffer.from(mBytes))}`, size: mBytes.length };
  await writeFile(join(lying, 'index.json'), JSON.stringify(idx));
  await assert.rejects(store.import(lying), reason(/digest mismatch: layer .* unpacks to/));

  assert.deepEqual(await readdir(join(root, 'blobs/sha256')), [], 'failed imports leave no blobs');
  assert.deepEqual(await readdir(join(root, 'layers')), []);
});

test('remove: a tag, then the image by id; unreferenced blobs and layers are collected', async (t) => {
  if (!prerequisite(t, asRoot, 'root')) return;
  const { store, root } = await newStore(t);
  const work = await tempDir(t, 'rm');
  const base = await makeTar([{ name: 'base', content: 'b' }]);
  const top = await makeTar([{ name: 'top', content: 't' }]);
  await makeOciLayout(join(work, 'a'), [{ ref: 'x', layers: [base] }]);
  await makeOciLayout(join(work, 'b'), [{ ref: 'x', layers: [base, top] }]);
  const a = await store.import(join(work, 'a'), { name: 'a:1' });
  await store.import(join(work, 'a'), { name: 'a:2' });
  const b = await store.import(join(work, 'b'), { name: 'b' });
  assert.deepEqual((await store.inspect('a:2')).tags, ['a:1', 'a:2']);
  await store.remove('a:1');
  assert.deepEqual((await store.inspect(a.id)).tags, ['a:2']);
  await store.remove(a.id.slice(7, 17));
  await assert.rejects(store.inspect('a:2'), code('IMAGE_NOT_FOUND'));
  assert.equal((await readdir(join(root, 'layers'))).length, 2, 'the shared base layer stays for b');
  await store.remove('b:latest');
  assert.deepEqual(await store.list(), []);
  assert.deepEqual(await readdir(join(root, 'blobs/sha256')), []);
  assert.deepEqual(await readdir(join(root, 'layers')), []);
  await assert.rejects(store.remove(b.id), code('IMAGE_NOT_FOUND'));
  assert.deepEqual(JSON.parse(await readFile(join(root, 'index.json'), 'utf8')).manifests, []);
});

test('concurrent imports from this process and another keep index.json whole', async (t) => {
  if (!prerequisite(t, asRoot, 'root')) return;
  const { store, root } = await newStore(t);
  const work = await tempDir(t, 'conc');
  const files: string[] = [];
  for (let i = 0; i < 8; i++) {
    const f = join(work, `r${i}.tar`);
    await writeFile(f, await makeTar([{ name: `file${i}`, content: String(i) }, { name: 'shared', content: 'same' }]));
    files.push(f);
  }
  const child = `
    import { LocalImageStore } from ${JSON.stringify(join(REPO, 'src/agent/images/store.ts'))};
    const s = new LocalImageStore({ root: ${JSON.stringify(root)}, idShift: { hostId: 100000, size: 65536 }, sampleAppPath: '/nonexistent' });
    await Promise.all(${JSON.stringify(files.slice(4))}.map((f, i) => s.import(f, { name: 'other:' + i })));
  `;
  const other = promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', child], { cwd: REPO });
  await Promise.all([...files.slice(0, 4).map((f, i) => store.import(f, { name: `mine:${i}` })), store.import(files[0]!, { name: 'mine:dup' })]);
  await other;
  const index = JSON.parse(await readFile(join(root, 'index.json'), 'utf8'));
  const tags = index.manifests.map((d: { annotations: Record<string, string> }) => d.annotations['org.opencontainers.image.ref.name']).sort();
  assert.deepEqual(tags, ['mine:0', 'mine:1', 'mine:2', 'mine:3', 'mine:dup', 'other:0', 'other:1', 'other:2', 'other:3']);
  for (const img of await store.list()) {
    for (const l of img.layers) await stat(join(root, 'blobs/sha256', l.slice(7)));
  }
  assert.equal((await readdir(join(root, 'layers'))).length, 8);
  assert.deepEqual((await readdir(join(root, 'tmp'))).filter((n) => !n.startsWith('active-')), [], 'no work files left');
});
