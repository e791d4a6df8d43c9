/** Volume sync with real GNU tar: base while running, delta at the freeze, the target ends up identical. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { packBase, packDelta, unpack } from './volume-sync.ts';

/** Every entry under `dir`: path, type, mode, owner, and content or link target. */
function tree(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(dir, rel)).sort()) {
    const p = join(rel, name);
    const st = lstatSync(join(dir, p));
    const what = st.isSymbolicLink() ? `-> ${readlinkSync(join(dir, p))}` : st.isDirectory() ? 'dir' : `${readFileSync(join(dir, p)).length} bytes ${readFileSync(join(dir, p)).subarray(0, 32).toString('hex')} links ${st.nlink}`;
    out.push(`${p} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid} ${what}`);
    if (st.isDirectory()) out.push(...tree(dir, p));
  }
  return out;
}

test('volume sync: base, then a delta with changes, additions and deletions; the target equals the source', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'ferry-volsync-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  const [src, dst, work] = [join(base, 'src'), join(base, 'dst'), join(base, 'work')];
  for (const d of [src, work]) mkdirSync(d);
  mkdirSync(join(src, 'db/old'), { recursive: true });
  writeFileSync(join(src, 'db/table'), Buffer.alloc(1 << 20, 1));
  writeFileSync(join(src, 'db/old/gone'), 'to be deleted');
  writeFileSync(join(src, 'same'), 'unchanged');
  writeFileSync(join(src, 'mode'), 'x');
  chownSync(join(src, 'db'), 100999, 100999); // a container user, as the user namespace maps it
  const snapshot = join(work, 'snar');
  const baseBytes = await packBase(src, snapshot, join(work, 'base.tar'));
  assert.ok(baseBytes > 1 << 20, 'the base holds everything');

  // While the container runs on: the target unpacks the base.
  await unpack(join(work, 'base.tar'), dst);
  assert.deepEqual(tree(dst), tree(src));

  // Changes before the freeze.
  writeFileSync(join(src, 'db/table'), Buffer.alloc(1 << 20, 2));
  rmSync(join(src, 'db/old'), { recursive: true });
  writeFileSync(join(src, 'new'), 'added');
  linkSync(join(src, 'new'), join(src, 'new-link'));
  symlinkSync('same', join(src, 'sym'));
  chmodSync(join(src, 'mode'), 0o600);
  const deltaBytes = await packDelta(src, snapshot, join(work, 'delta.tar'));
  assert.ok(deltaBytes > 1 << 20, `the delta holds the changed table (${deltaBytes} bytes)`);
  const files = execFileSync('tar', ['-tf', join(work, 'delta.tar')], { encoding: 'utf8' }).split('\n').filter((l) => l && !l.endsWith('/'));
  assert.deepEqual(files.sort(), ['./db/table', './mode', './new', './new-link', './sym'], 'only what changed travels (directories list their entries)');

  await unpack(join(work, 'delta.tar'), dst);
  assert.deepEqual(tree(dst), tree(src), 'changed, added, chmod-ed and deleted entries all match');

  // The delta pass can be repeated (a retried freeze): the snapshot is still the base's.
  const again = await packDelta(src, snapshot, join(work, 'delta2.tar'));
  assert.ok(again > 1 << 20);
});
