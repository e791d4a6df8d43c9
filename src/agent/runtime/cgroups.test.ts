import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { cgroupVersion, limitOrZero, oomKillCount, parseKeyValues, readStats } from './cgroups.ts';

function fakeRoot(t: { after: (fn: () => void) => void }, files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'ferry-cg-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

test('v1: one hierarchy per controller; the huge unlimited value reads as 0', async (t) => {
  const root = fakeRoot(t, {
    'cpuacct/ferry/c1/cpuacct.usage': '123456\n',
    'memory/ferry/c1/memory.usage_in_bytes': '4096\n',
    'memory/ferry/c1/memory.limit_in_bytes': '9223372036854771712\n',
    'memory/ferry/c1/memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n',
    'pids/ferry/c1/pids.current': '3\n',
  });
  assert.equal(cgroupVersion(root), 1);
  const s = await readStats('/ferry/c1', root);
  assert.deepEqual({ ...s, time: '' }, { time: '', cpuUsageNs: 123456, memoryUsageBytes: 4096, memoryLimitBytes: 0, pids: 3, cgroupVersion: 1 });
  assert.equal(await oomKillCount('/ferry/c1', root), 2);
  assert.equal(await oomKillCount('/ferry/gone', root), undefined);
});

test('what a checkpoint writes: anonymous plus shared memory, not the page cache (v1 and v2)', async (t) => {
  const v1 = fakeRoot(t, {
    'memory/ferry/c1/memory.usage_in_bytes': '90000\n',
    'memory/ferry/c1/memory.stat': 'cache 60000\nrss 20000\nshmem 4096\ntotal_cache 60000\ntotal_rss 20480\ntotal_shmem 4096\n',
  });
  assert.equal((await readStats('/ferry/c1', v1)).memoryDumpBytes, 24576);
  const v2 = fakeRoot(t, {
    'cgroup.controllers': 'cpu memory pids\n',
    'ferry/c1/memory.current': '90000\n',
    'ferry/c1/memory.stat': 'anon 20480\nfile 60000\nshmem 8192\n',
  });
  assert.equal((await readStats('/ferry/c1', v2)).memoryDumpBytes, 28672);
});

test('v2: unified hierarchy, usage_usec in ns, "max" as 0', async (t) => {
  const root = fakeRoot(t, {
    'cgroup.controllers': 'cpu memory pids\n',
    'ferry/c1/cpu.stat': 'usage_usec 42\nuser_usec 40\n',
    'ferry/c1/memory.current': '8192\n',
    'ferry/c1/memory.max': 'max\n',
    'ferry/c1/memory.events': 'low 0\nhigh 0\nmax 1\noom 1\noom_kill 1\n',
    'ferry/c1/pids.current': '1\n',
  });
  assert.equal(cgroupVersion(root), 2);
  const s = await readStats('/ferry/c1', root);
  assert.deepEqual({ ...s, time: '' }, { time: '', cpuUsageNs: 42000, memoryUsageBytes: 8192, memoryLimitBytes: 0, pids: 1, cgroupVersion: 2 });
  assert.equal(await oomKillCount('/ferry/c1', root), 1);
});

test('helpers', () => {
  assert.deepEqual([...parseKeyValues('a 1\nb x\n c 3 \n')], [['a', 1], ['c', 3]]);
  assert.equal(limitOrZero(1024), 1024);
  assert.equal(limitOrZero(2 ** 63), 0);
});
