/**
 * A migration on the cluster network that fails after the freeze (the target's restore fails —
 * failpoint `migrate:restore-fails` on every agent of this cluster): the source, cut off the network
 * before it froze, is thawed and connected again, and announces its address back. One client's TCP
 * connection carries on through all of it, with the counter continuing.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { lineClient, useCluster, type TestCluster } from './support/cluster.ts';
import { skipUnlessReady } from './support/prereq.ts';
import { until } from './support/wait.ts';
import type { Migration } from '../src/model/index.ts';

const TOOLS = ['runc', 'ip', 'iptables', 'ebtables', 'bridge', 'nsenter', '/usr/bin/busybox', '/opt/ferry/bin/criu'];
const ECHO_PORT = 7000;

describe('a failed migration on the cluster network rolls back without breaking a connection', { skip: skipUnlessReady(TOOLS) }, () => {
  const cluster = useCluster({ nodes: 2, tools: TOOLS, env: { FERRY_FAILPOINTS: 'migrate:restore-fails' } });
  let c: TestCluster;
  before(() => { c = cluster.c; });

  it('the source is reconnected, its address answers again from its host, the client never notices more than a pause', async () => {
    const [a, b] = c.hosts;
    await c.ok(['run', '--name', 'srv', '--node', a!.node, '-e', `ECHO_PORT=${ECHO_PORT}`, 'sample']);
    const v0 = await until('srv to run', async () => {
      const cv = await c.client.containers.get('srv');
      return cv.status?.phase === 'running' && cv.status.ip ? cv : undefined;
    });
    const ip = v0.status!.ip!;
    const client = await lineClient(c, 1, ip, ECHO_PORT);
    let end: Awaited<ReturnType<typeof client.stop>> | undefined;
    try {
      const r = await c.cli(['-o', 'json', 'migrate', 'srv', '--to', b!.node, '--strategy', 'stop-copy']);
      const m = JSON.parse(r.stdout) as Migration;
      assert.equal(m.status.phase, 'RolledBack', JSON.stringify(m.status));
      assert.match(m.status.error ?? '', /failpoint migrate:restore-fails/);
      assert.equal((await c.client.containers.get('srv')).container.placement?.node, a!.node);
      const v = await until('the source to report it running again', async () => {
        const cv = await c.client.containers.get('srv');
        return cv.status?.phase === 'running' && cv.status.node === a!.node ? cv : undefined;
      });
      assert.equal(v.status?.ip, ip);
      await client.flowing(20, 'lines to flow again after the rollback');
      assert.deepEqual(client.errors(), []);
      // A fresh connection from the other host reaches it too (its address is announced back).
      const fresh = await c.exec(1, ['/usr/bin/busybox', 'wget', '-q', '-O', '-', `http://${ip}/count`]);
      assert.equal(fresh.code, 0, fresh.stderr);
    } finally {
      end = await client.stop();
    }
    assert.equal(end.done?.error, null, `the connection broke: ${String(end.done?.error)}`);
    assert.equal(end.code, 0);
    await c.ok(['rm', '-f', 'srv']);
  });
});
