import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { buildConfig, cgroupsPathFor, cpuQuota, writeBundle } from './bundle.ts';
import type { BundleSpec } from './types.ts';

const base: BundleSpec = {
  id: 'web-1',
  rootfs: '/var/lib/ferry/rootfs/web-1',
  args: ['nginx', '-g', 'daemon off;'],
  env: ['PATH=/usr/bin'],
  cwd: '',
  uid: 101,
  gid: 101,
  hostname: 'web',
  resources: {},
  mounts: [{ source: '/data/web', destination: '/srv', readOnly: true }],
  newNetns: false,
};
const userns = { uidMappings: [{ containerId: 0, hostId: 100000, size: 65536 }], newNetns: true };

test('the process: no terminal, user, default cwd, capabilities, NOFILE 1024', () => {
  const c = buildConfig({ ...base, additionalGids: [5] });
  assert.equal(c.ociVersion, '1.0.2');
  assert.equal(c.process.terminal, false);
  assert.deepEqual(c.process.user, { uid: 101, gid: 101, additionalGids: [5] });
  assert.equal(c.process.cwd, '/');
  assert.ok(c.process.capabilities.bounding.includes('CAP_NET_BIND_SERVICE'));
  assert.ok(!c.process.capabilities.bounding.includes('CAP_SYS_ADMIN'));
  assert.deepEqual(c.process.rlimits, [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }]);
  assert.deepEqual(c.root, { path: base.rootfs, readonly: false });
});

test('namespaces: runc creates them all; network and user only when asked', () => {
  const types = (s: BundleSpec) => buildConfig(s).linux.namespaces.map((n) => n.type).sort();
  assert.deepEqual(types(base), ['ipc', 'mount', 'pid', 'uts']);
  assert.deepEqual(types({ ...base, ...userns }), ['ipc', 'mount', 'network', 'pid', 'user', 'uts']);
  assert.ok(buildConfig({ ...base, ...userns }).linux.namespaces.every((n) => n.path === undefined));
});

test('id mappings: gid mappings default to the uid mappings', () => {
  const c = buildConfig({ ...base, ...userns });
  assert.deepEqual(c.linux.uidMappings, [{ containerID: 0, hostID: 100000, size: 65536 }]);
  assert.deepEqual(c.linux.gidMappings, c.linux.uidMappings);
  assert.equal(buildConfig(base).linux.uidMappings, undefined);
});

test('mounts: standard set, sysfs with an own netns, bind of /sys without one, volumes as rbind', () => {
  const sys = (s: BundleSpec) => buildConfig(s).mounts.find((m) => m.destination === '/sys');
  assert.equal(sys({ ...base, ...userns })?.type, 'sysfs');
  assert.equal(sys(base)?.type, 'sysfs');
  assert.equal(sys({ ...base, ...userns, newNetns: false })?.type, 'bind');
  const c = buildConfig(base);
  assert.deepEqual(c.mounts.map((m) => m.destination), ['/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/sys', '/srv']);
  assert.deepEqual(c.mounts.at(-1), { destination: '/srv', type: 'bind', source: '/data/web', options: ['rbind', 'rprivate', 'ro'] });
});

test('resources: memory with swap = limit, cpus as quota, pids; devices denied by default', () => {
  const r = buildConfig({ ...base, resources: { memoryBytes: 256 << 20, cpus: 1.5, pidsLimit: 64 } }).linux.resources;
  assert.deepEqual(r.memory, { limit: 256 << 20, swap: 256 << 20 });
  assert.deepEqual(r.cpu, { quota: 150000, period: 100000 });
  assert.deepEqual(r.pids, { limit: 64 });
  assert.deepEqual(r.devices, [{ allow: false, access: 'rwm' }]);
  assert.deepEqual(buildConfig(base).linux.resources, { devices: [{ allow: false, access: 'rwm' }] });
  assert.deepEqual(cpuQuota(0.001), { quota: 1000, period: 100000 });
});

test('cgroupsPath from the parent; masked and read-only paths; hooks and annotations', () => {
  assert.equal(buildConfig(base).linux.cgroupsPath, '/ferry/web-1');
  assert.equal(buildConfig(base, { cgroupParent: '/custom/' }).linux.cgroupsPath, '/custom/web-1');
  assert.equal(cgroupsPathFor('x', ''), '/x');
  const c = buildConfig({
    ...base,
    hooks: { prestart: [{ path: '/usr/bin/ferry-net', args: ['ferry-net', 'up'], timeout: 10 }] },
    annotations: { 'org.criu.config': '/etc/criu.conf' },
  });
  assert.ok(c.linux.maskedPaths.includes('/proc/kcore'));
  assert.ok(c.linux.readonlyPaths.includes('/proc/sys'));
  assert.deepEqual(c.hooks, { prestart: [{ path: '/usr/bin/ferry-net', args: ['ferry-net', 'up'], timeout: 10 }] });
  assert.deepEqual(c.annotations, { 'org.criu.config': '/etc/criu.conf' });
  assert.equal(buildConfig(base).hooks, undefined);
});

test('writeBundle: directory 0755, config.json 0600', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-bundle-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bundle = join(dir, 'b');
  await writeBundle(bundle, base);
  assert.equal(statSync(bundle).mode & 0o777, 0o755);
  assert.equal(statSync(join(bundle, 'config.json')).mode & 0o777, 0o600);
  assert.equal(JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')).hostname, 'web');
});
