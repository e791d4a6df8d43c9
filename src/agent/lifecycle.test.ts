import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { cgroupYard, criuOptions } from './lifecycle.ts';

/** A mountinfo line for a cgroup mount at `at`. */
const cg = (id: number, at: string, fstype = 'cgroup', opts = 'rw'): string => `${id} 25 0:${id} / ${at} rw,nosuid,nodev,noexec,relatime shared:${id} - ${fstype} cgroup ${opts}`;

test('cgroupYard: a hybrid host whose hierarchies are mounted under the names CRIU gives them', () => {
  const self = '9:name=systemd:/\n4:memory:/x\n2:cpu,cpuacct:/\n0::/\n';
  const mounts = [
    '22 1 0:20 / / rw - ext4 /dev/vda rw',
    cg(30, '/sys/fs/cgroup', 'tmpfs'),
    cg(31, '/sys/fs/cgroup/unified', 'cgroup2'),
    cg(32, '/sys/fs/cgroup/systemd', 'cgroup', 'rw,name=systemd'),
    cg(33, '/sys/fs/cgroup/memory'),
    cg(34, '/sys/fs/cgroup/cpu,cpuacct'),
  ].join('\n');
  assert.equal(cgroupYard(self, mounts), '/sys/fs/cgroup');
  // One hierarchy mounted elsewhere (or not at all): CRIU mounts its own yard.
  assert.equal(cgroupYard(self, mounts.replace('/sys/fs/cgroup/cpu,cpuacct', '/sys/fs/cgroup/cpu')), undefined);
  // A tmpfs directory of that name is no hierarchy.
  assert.equal(cgroupYard('1:pids:/\n', cg(40, '/sys/fs/cgroup/pids', 'tmpfs')), undefined);
});

test('cgroupYard: a cgroup-v2-only host has no per-hierarchy directories', () => {
  assert.equal(cgroupYard('0::/user.slice\n', cg(31, '/sys/fs/cgroup', 'cgroup2')), undefined);
  assert.equal(cgroupYard('', ''), undefined);
});

test('criuOptions: the network lock is CRIU\'s unless skipped; the yard where this host has one', () => {
  const yard = cgroupYard(readFileSync('/proc/self/cgroup', 'utf8'), readFileSync('/proc/self/mountinfo', 'utf8'));
  const plain = criuOptions();
  assert.match(plain, /^network-lock nftables$/m);
  assert.match(plain, /^manage-cgroups ignore$/m);
  assert.match(plain, /^skip-in-flight$/m);
  assert.equal(/^cgroup-yard /m.test(plain), yard !== undefined);
  if (yard) assert.match(plain, new RegExp(`^cgroup-yard ${yard}$`, 'm'));
  assert.match(criuOptions({ networkLock: 'skip' }), /^network-lock skip$/m);
});
