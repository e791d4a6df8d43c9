/**
 * The user story of the foundation issue, through the real `ferry` command: up, run the sample with a
 * published port and a memory limit, ps, inspect, logs, exec, update in place, stop, start, rm — each
 * also with `-o json` — on real runc, cgroups, overlayfs and network namespaces.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { startFerry, teardownFerry, type TestFerry } from './support/ferry.ts';
import { ensurePrerequisites, skipUnlessReady } from './support/prereq.ts';
import { freePort, getWithRetry } from './support/net.ts';
import type { ContainerView } from '../src/model/index.ts';

const TOOLS = ['runc', 'ip', 'iptables', 'busybox'];

function cgroupFile(f: TestFerry, ctl: string, runtimeId: string, file: string): string {
  return readFileSync(`/sys/fs/cgroup/${ctl}/${f.cgroupParent}/${runtimeId}/${file}`, 'utf8').trim();
}

describe('ferry CLI on one real node', { skip: skipUnlessReady(TOOLS) }, () => {
  let f: TestFerry;
  let port: number;

  before(async () => {
    ensurePrerequisites(TOOLS);
    f = await startFerry();
    port = await freePort();
  });
  after(async () => {
    if (!f) return;
    const left = await teardownFerry(f);
    assert.deepEqual(left, [], `teardown found leftovers: ${left.join('; ')}`);
  });

  it('node ls shows this node Ready with its facts', async () => {
    const nodes = await f.json<{ node: { metadata: { name: string }; status: { facts: { criu: string; cgroupVersion: number } } }; state: string }[]>(['node', 'ls']);
    const n = nodes.find((x) => x.node.metadata.name === f.node);
    assert.ok(n, 'our node is listed');
    assert.equal(n.state, 'Ready');
    assert.match(n.node.status.facts.criu, /^4\.\d/);
    const table = await f.ok(['node', 'ls']);
    assert.match(table, new RegExp(`${f.node}\\s+Ready`));
  });

  it('image ls shows the built-in sample image', async () => {
    const imgs = await f.json<{ tags: string[]; nodes: string[] }[]>(['image', 'ls']);
    assert.ok(imgs.some((i) => i.tags.includes('sample:latest') && i.nodes.includes(f.node)));
  });

  it('run starts the sample with a published port and a memory limit', async () => {
    const out = await f.ok(['run', '--name', 'web', '-p', `127.0.0.1:${port}:80`, '--memory', '128m', 'sample']);
    assert.equal(out.trim(), 'web');
    const first = JSON.parse(await getWithRetry(`http://127.0.0.1:${port}/`)) as { count: number };
    const second = JSON.parse(await getWithRetry(`http://127.0.0.1:${port}/`)) as { count: number };
    assert.equal(second.count, first.count + 1, 'the counter increases: state lives in the process');
    const v = await f.json<ContainerView>(['inspect', 'web']);
    assert.equal(v.status?.phase, 'running');
    assert.equal(cgroupFile(f, 'memory', v.status!.runtimeId, 'memory.limit_in_bytes'), String(128 * 1024 * 1024));
    assert.deepEqual(f.runcIds(), [v.status!.runtimeId]);
  });

  it('ps lists it, in a table and as JSON', async () => {
    const table = await f.ok(['ps']);
    assert.match(table, /^NAME\s+IMAGE\s+STATE/m);
    assert.match(table, new RegExp(`^web\\s+sample\\s+running .*127\\.0\\.0\\.1:${port}->80/tcp`, 'm'));
    const list = await f.json<ContainerView[]>(['ps']);
    assert.deepEqual(list.map((v) => v.container.metadata.name), ['web']);
  });

  it('inspect describes it for people', async () => {
    const text = await f.ok(['inspect', 'web']);
    assert.match(text, /^Name:\s+web$/m);
    assert.match(text, /^Memory:\s+128MiB$/m);
    assert.match(text, new RegExp(`^Node:\\s+${f.node}$`, 'm'));
    assert.match(text, /^Migratable:\s+yes$/m, 'the sample app holds nothing CRIU cannot dump');
  });

  it('logs shows the app output, and -f follows new lines', async () => {
    const logs = await f.ok(['logs', 'web']);
    assert.match(logs, /sample-app listening on :80/);
    const json = (await f.ok(['-o', 'json', 'logs', 'web'])).trim().split('\n').map((l) => JSON.parse(l) as { stream: string; line: string });
    assert.ok(json.some((l) => l.stream === 'stdout' && /listening/.test(l.line)));
    // Follow: a second container prints a line every 200 ms; `logs -f` shows them as they come and
    // ends by itself when the container stops.
    await f.ok(['run', '--name', 'ticker', '--entrypoint', '/bin/sh', 'sample', '--', '-c', 'i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done']);
    const follower = f.cli(['logs', '-f', 'ticker']);
    await new Promise((r) => setTimeout(r, 2000));
    await f.ok(['stop', 'ticker']);
    const followed = await follower;
    const ticks = followed.stdout.split('\n').filter((l) => /^tick \d+$/.test(l)).map((l) => Number(l.slice(5)));
    assert.ok(ticks.length >= 5, `logs -f printed ${ticks.length} ticks`);
    assert.deepEqual(ticks, ticks.map((_, i) => ticks[0]! + i), 'in order, none lost');
    await f.ok(['rm', 'ticker']);
  });

  it('exec runs a command and passes its output and exit code', async () => {
    assert.equal((await f.ok(['exec', 'web', '--', 'sh', '-c', 'echo hi'])).trim(), 'hi');
    const r = await f.cli(['exec', 'web', '--', 'sh', '-c', 'echo out; echo err >&2; exit 7']);
    assert.deepEqual([r.code, r.stdout.trim(), r.stderr.trim()], [7, 'out', 'err']);
    const j = await f.cli(['-o', 'json', 'exec', 'web', '--', 'sh', '-c', 'echo hi; exit 3']);
    assert.equal(j.code, 3);
    assert.deepEqual(JSON.parse(j.stdout), { exitCode: 3, stdout: 'hi\n', stderr: '' });
    assert.equal((await f.ok(['exec', 'web', '--', 'id', '-u'])).trim(), '0', 'root inside the user namespace');
  });

  it('update changes memory and CPU in the cgroup without a restart', async () => {
    const before = await f.json<ContainerView>(['inspect', 'web']);
    const count0 = (JSON.parse(await getWithRetry(`http://127.0.0.1:${port}/`)) as { count: number }).count;
    const v = await f.json<ContainerView>(['update', 'web', '--memory', '256m', '--cpus', '0.5']);
    assert.equal(v.container.spec.resources.memoryBytes, 256 * 1024 * 1024);
    const id = before.status!.runtimeId;
    assert.equal(cgroupFile(f, 'memory', id, 'memory.limit_in_bytes'), String(256 * 1024 * 1024));
    assert.equal(cgroupFile(f, 'cpu', id, 'cpu.cfs_quota_us'), '50000');
    assert.equal(cgroupFile(f, 'cpu', id, 'cpu.cfs_period_us'), '100000');
    const after = await f.json<ContainerView>(['inspect', 'web']);
    assert.equal(after.status!.pid, before.status!.pid, 'same process');
    const count1 = (JSON.parse(await getWithRetry(`http://127.0.0.1:${port}/`)) as { count: number }).count;
    assert.equal(count1, count0 + 1, 'in-memory state kept');
    const stats = await f.json<{ cpuUsageNs: number; memoryUsageBytes: number; memoryLimitBytes: number }>(['stats', 'web']);
    assert.ok(stats.cpuUsageNs > 0 && stats.memoryUsageBytes > 0);
    assert.equal(stats.memoryLimitBytes, 256 * 1024 * 1024);
  });

  it('stop and start keep the container and its filesystem', async () => {
    await f.ok(['exec', 'web', '--', 'sh', '-c', 'echo kept > /tmp/marker']);
    const stopped = await f.json<ContainerView[]>(['stop', 'web']);
    assert.equal(stopped[0]!.status?.phase, 'stopped');
    assert.match(await f.ok(['ps', '-a']), /^web\s+sample\s+stopped/m);
    assert.doesNotMatch(await f.ok(['ps']), /^web/m, 'ps without -a hides stopped containers');
    const started = await f.json<ContainerView[]>(['start', 'web']);
    assert.equal(started[0]!.status?.phase, 'running');
    assert.equal((await f.ok(['exec', 'web', '--', 'cat', '/tmp/marker'])).trim(), 'kept');
    const body = JSON.parse(await getWithRetry(`http://127.0.0.1:${port}/`)) as { count: number };
    assert.equal(body.count, 1, 'a new process starts counting again');
    const id = started[0]!.status!.runtimeId;
    assert.equal(cgroupFile(f, 'memory', id, 'memory.limit_in_bytes'), String(256 * 1024 * 1024), 'limits survive a restart');
  });

  it('rm removes it and everything it had on the node', async () => {
    const v = await f.json<ContainerView>(['inspect', 'web']);
    const id = v.status!.runtimeId;
    const r = await f.json<{ removed: string[] }>(['rm', 'web']);
    assert.deepEqual(r.removed, ['web']);
    assert.deepEqual(f.runcIds(), []);
    assert.equal(existsSync(`/sys/fs/cgroup/memory/${f.cgroupParent}/${id}`), false, 'cgroup removed');
    assert.ok(!readFileSync('/proc/self/mounts', 'utf8').includes(id), 'rootfs unmounted');
    const gone = await f.cli(['inspect', 'web']);
    assert.equal(gone.code, 4);
    assert.match(gone.stderr, /no container named "web"/);
  });
});
