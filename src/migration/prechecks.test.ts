import { test } from 'node:test';
import assert from 'node:assert/strict';
import { precheck, blocking, missingCpuFlags, volumeCheck, localVolumeNames, type NodeCheckFacts, type ContainerCheckFacts } from './prechecks.ts';

const GiB = 1024 ** 3;
const facts = { hostname: 'h', kernel: '6.18', arch: 'x64', os: 'Debian', runc: '1.1.5', criu: '4.2.1', cgroupVersion: 1, overlay: true, cpuModel: 'x', cpuFlags: ['sse2', 'avx2'] };
const node = (name: string, o: Partial<NodeCheckFacts> = {}): NodeCheckFacts => ({
  name, ready: true, unschedulable: false, capacity: { cpus: 2, memoryBytes: 8 * GiB }, allocated: { cpus: 0, memoryBytes: 0 }, facts, imageIds: ['sha256:img'], ...o,
});
const web: ContainerCheckFacts = { name: 'web', phase: 'running', imageId: 'sha256:img', memoryBytes: GiB, migratable: { ok: true, reasons: [] }, migrating: false };

test('all checks pass between two like nodes', () => {
  const r = precheck(web, node('a'), node('b'));
  assert.deepEqual(blocking(r), []);
  assert.equal(r.length, 12);
});

test('each failing check names what is wrong', () => {
  const r = precheck(
    { ...web, phase: 'stopped', migrating: true, migratable: { ok: false, reasons: ['process 7 (app) holds an inotify watch'] }, imageId: 'sha256:other' },
    node('a', { facts: { ...facts, cpuFlags: ['sse2', 'avx2', 'avx512f'] } }),
    node('a', { ready: false, allocated: { cpus: 2, memoryBytes: 7.5 * GiB }, facts: { ...facts, criu: '4.1.1', cgroupVersion: 2, arch: 'arm64' } }),
  );
  const why = Object.fromEntries(r.filter((x) => !x.ok).map((x) => [x.check, x.reason]));
  assert.match(why['distinct-nodes']!, /already runs on a/);
  assert.match(why['container-running']!, /is stopped/);
  assert.match(why['not-migrating']!, /already being migrated/);
  assert.match(why.dumpable!, /inotify/);
  assert.match(why['target-ready']!, /not ready/);
  assert.match(why['target-capacity']!, /512 MiB and 0.00 CPUs free; web needs 1024 MiB/);
  assert.match(why['same-architecture']!, /x64.*arm64/);
  assert.match(why['cpu-features']!, /avx512f/);
  assert.match(why.criu!, /4\.1\.1/);
  assert.match(why['cgroup-version']!, /v1.*v2/);
  assert.match(why['image-on-target']!, /copied there first/);
  assert.ok(!blocking(r).some((x) => x.check === 'image-on-target'), 'a missing image is not blocking');
});

test('CPU flags: only what the target lacks', () => {
  assert.deepEqual(missingCpuFlags(['a', 'b', 'c'], ['c', 'a']), ['b']);
  assert.deepEqual(missingCpuFlags(['a'], ['a', 'z']), []);
});

test('post-copy needs userfaultfd on the target and states its one risk', () => {
  const ok = precheck(web, node('a'), node('b', { facts: { ...facts, userfaultfd: true } }), 'post-copy');
  assert.deepEqual(blocking(ok), []);
  assert.match(ok.find((x) => x.check === 'post-copy-risk')!.reason, /if a fails in that window .* state is lost/);
  const refused = blocking(precheck(web, node('a'), node('b', { facts: { ...facts, userfaultfd: false } }), 'post-copy'));
  assert.deepEqual(refused.map((x) => x.check), ['userfaultfd']);
  assert.match(refused[0]!.reason, /sysctl -w vm.unprivileged_userfaultfd=1/);
  assert.ok(!precheck(web, node('a'), node('b'), 'stop-copy').some((x) => x.check === 'userfaultfd'), 'stop-copy does not need it');
  assert.ok(!ok.some((x) => x.check === 'lazy-restore'), 'post-copy states its own risk instead');
});

test('stop-copy and pre-copy say that a large image is restored lazily from the target\'s own copy, where userfaultfd allows it', () => {
  for (const strategy of ['stop-copy', 'pre-copy', 'auto']) {
    const r = precheck(web, node('a'), node('b', { facts: { ...facts, userfaultfd: true } }), strategy);
    assert.deepEqual(blocking(r), []);
    assert.match(r.find((x) => x.check === 'lazy-restore')!.reason, /128 MiB .* a CRIU daemon on b holds the rest of its memory \(not a\); if that daemon fails, the container's state is lost/);
  }
  assert.ok(!precheck(web, node('a'), node('b', { facts: { ...facts, userfaultfd: false } }), 'stop-copy').some((x) => x.check === 'lazy-restore'), 'no userfaultfd: restored whole, nothing to say');
});

test('the address: kept on the cluster network, refused towards a node off it, said to change otherwise', () => {
  const onOverlay = precheck({ ...web, clusterIp: '10.216.0.7' }, node('a', { overlayIp: '10.216.0.2' }), node('b', { overlayIp: '10.216.0.3' }));
  assert.deepEqual(blocking(onOverlay), []);
  assert.match(onOverlay.find((x) => x.check === 'address')!.reason, /keeps its address 10\.216\.0\.7 and its open connections/);
  const offOverlay = blocking(precheck({ ...web, clusterIp: '10.216.0.7' }, node('a', { overlayIp: '10.216.0.2' }), node('b')));
  assert.equal(offOverlay.length, 1);
  assert.match(offOverlay[0]!.reason, /b is not on the cluster network .* 10\.216\.0\.7 cannot move there/);
  const local = precheck(web, node('a'), node('b')).find((x) => x.check === 'address')!;
  assert.equal(local.ok, true);
  assert.match(local.reason, /address changes .* connections are closed/);
});

test('volumes: local ones move, unless another container on the node uses them; writable host directories are refused', () => {
  const local = (source: string) => ({ source, target: `/${source}`, readOnly: false, kind: 'local' as const });
  assert.deepEqual(localVolumeNames([local('a'), { source: 'b', target: '/b', readOnly: false, kind: 'shared' }, { source: '/h', target: '/h', readOnly: true }]), ['a']);
  assert.deepEqual(volumeCheck('web', [], []), { check: 'volumes', ok: true, reason: 'no host-local data to move (its writable layer travels with it)' });
  const moves = volumeCheck('web', [local('a'), { source: '/etc/tz', target: '/etc/tz', readOnly: true }], [{ name: 'other', volumes: [local('b')] }]);
  assert.equal(moves.ok, true);
  assert.match(moves.reason, /local volumes \(a\) move with it/);
  const shared = volumeCheck('web', [local('a'), local('c')], [{ name: 'db', volumes: [local('c')] }]);
  assert.equal(shared.ok, false);
  assert.match(shared.reason, /other containers on its node use them: c \(also used by db\)/);
  const bind = volumeCheck('web', [{ source: '/srv/x', target: '/data', readOnly: false }], []);
  assert.equal(bind.ok, false);
  assert.match(bind.reason, /writes to host directories that would not move with it: \/srv\/x \(at \/data\); use a named volume \(-v name:\/data\)/);
});
