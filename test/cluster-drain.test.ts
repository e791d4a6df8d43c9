/**
 * Host maintenance with zero downtime, end to end on three simulated hosts: `ferry node drain`
 * moves every container off host A while clients on another host hold one TCP connection to each —
 * the connections carry on (same addresses, counters continuing), host A is left cordoned and
 * empty, and `undrain` makes it schedulable again.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { lineClient, useCluster, type LineClient, type TestCluster } from './support/cluster.ts';
import { skipUnlessReady } from './support/prereq.ts';
import { until } from './support/wait.ts';

const TOOLS = ['runc', 'ip', 'iptables', 'ebtables', 'bridge', 'nsenter', '/usr/bin/busybox', '/opt/ferry/bin/criu'];
const ECHO_PORT = 7000;
const NAMES = ['svc1', 'svc2'];

describe('draining a host on the cluster network', { skip: skipUnlessReady(TOOLS) }, () => {
  const cluster = useCluster({ nodes: 3, tools: TOOLS });
  let c: TestCluster;
  before(() => { c = cluster.c; });

  it('every container leaves host A live; each client keeps its one connection', async () => {
    const [a] = c.hosts;
    const ips = new Map<string, string>();
    for (const n of NAMES) {
      await c.ok(['run', '--name', n, '--node', a!.node, '-e', `ECHO_PORT=${ECHO_PORT}`, 'sample']);
      const v = await until(`${n} to run`, async () => {
        const cv = await c.client.containers.get(n);
        return cv.status?.phase === 'running' && cv.status.ip ? cv : undefined;
      });
      ips.set(n, v.status!.ip!);
    }
    const clients: LineClient[] = [];
    const ends: Array<Awaited<ReturnType<LineClient['stop']>>> = [];
    try {
      for (const n of NAMES) clients.push(await lineClient(c, 2, ips.get(n)!, ECHO_PORT));
      const r = await c.cli(['-o', 'json', 'node', 'drain', a!.node, '--concurrency', '2']);
      assert.equal(r.code, 0, r.stderr);
      const report = JSON.parse(r.stdout) as { unschedulable: boolean; results: Array<{ container: string; outcome: string; to?: string }>; summary: { migrated: number; failed: number } };
      assert.deepEqual([report.summary.migrated, report.summary.failed, report.unschedulable], [2, 0, true], r.stdout);
      for (const n of NAMES) {
        const v = await until(`${n} to report from its new host`, async () => {
          const cv = await c.client.containers.get(n);
          return cv.status?.phase === 'running' && cv.status.node !== a!.node ? cv : undefined;
        });
        assert.equal(v.status?.ip, ips.get(n), `${n} kept its address`);
        assert.equal(v.container.placement?.node, report.results.find((x) => x.container === n)?.to);
      }
      for (const [i, cl] of clients.entries()) {
        await cl.flowing(20, `lines to flow again to ${NAMES[i]}`);
        assert.deepEqual(cl.errors(), [], NAMES[i]);
      }
    } finally {
      for (const cl of clients) ends.push(await cl.stop());
    }
    for (const [i, end] of ends.entries()) {
      assert.equal(end.done?.error, null, `${NAMES[i]}: the connection broke: ${String(end.done?.error)}`);
      assert.equal(end.code, 0);
    }
    assert.match(await c.ok(['node', 'ls']), new RegExp(`${a!.node}\\s+Ready,unschedulable`));
    assert.match(await c.ok(['node', 'undrain', a!.node]), new RegExp(`node ${a!.node} is schedulable`));
    for (const n of NAMES) await c.ok(['rm', '-f', n]);
  });
});
