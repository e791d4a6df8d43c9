/**
 * Agents killed in the middle of a migration on the cluster network, while a client holds one TCP
 * connection to the container. Target killed right after its restore: the manager rolls back and
 * the source, cut off the network before it froze, is connected again; the returning target removes
 * its copy (which never came up on the network). Source killed right after its dump: the returning
 * source agent thaws its copy and connects it again. Either way the connection carries on, the
 * counter continuing, and the container runs once.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { lineClient, useCluster, type TestCluster } from './support/cluster.ts';
import { skipUnlessReady } from './support/prereq.ts';
import { until } from './support/wait.ts';
import { runcList } from './support/ferry.ts';
import type { Migration } from '../src/model/index.ts';

const TOOLS = ['runc', 'ip', 'iptables', 'ebtables', 'bridge', 'nsenter', '/usr/bin/busybox', '/opt/ferry/bin/criu'];
const ECHO_PORT = 7000;

/** Runs the echo app on host 0, holds a connection from host 1, migrates to host 1 expecting a rollback. */
async function crashAndRecover(c: TestCluster, failedIn: string, dead: 0 | 1): Promise<void> {
  const [a, b] = c.hosts;
  await c.ok(['run', '--name', 'srv', '--node', a!.node, '-e', `ECHO_PORT=${ECHO_PORT}`, 'sample']);
  const v0 = await until('srv to run', async () => {
    const cv = await c.client.containers.get('srv');
    return cv.status?.phase === 'running' && cv.status.ip ? cv : undefined;
  });
  const client = await lineClient(c, 1, v0.status!.ip!, ECHO_PORT);
  let end: Awaited<ReturnType<typeof client.stop>> | undefined;
  try {
    const r = await c.cli(['-o', 'json', 'migrate', 'srv', '--to', b!.node, '--strategy', 'stop-copy']);
    const m = JSON.parse(r.stdout) as Migration;
    assert.equal(m.status.phase, 'RolledBack', JSON.stringify(m.status));
    assert.equal(m.status.failedIn, failedIn);
    const victim = c.hosts[dead]!;
    assert.equal(victim.agentPid(), undefined, `the agent of ${victim.node} died at the failpoint`);
    await victim.restartAgent({ FERRY_FAILPOINTS: '' });
    await client.flowing(20, 'lines to flow again after the rollback');
    assert.deepEqual(client.errors(), []);
    const v = await until('srv to run on the source again', async () => {
      const cv = await c.client.containers.get('srv');
      return cv.status?.phase === 'running' && cv.status.node === a!.node ? cv : undefined;
    });
    assert.deepEqual([v.container.placement?.node, v.status?.ip], [a!.node, v0.status!.ip]);
    await until('the copy on the target to be removed', () => (runcList(b!.runcRoot).length === 0 ? true : undefined), 90_000);
    assert.deepEqual(runcList(a!.runcRoot), [v.status!.runtimeId]);
  } finally {
    end = await client.stop();
  }
  assert.equal(end.done?.error, null, `the connection broke: ${String(end.done?.error)}`);
  assert.equal(end.code, 0);
  await c.ok(['rm', '-f', 'srv']);
}

describe('target agent killed after its restore, on the cluster network', { skip: skipUnlessReady(TOOLS) }, () => {
  // Every agent has the failpoint; only a target restores.
  const cluster = useCluster({ nodes: 2, tools: TOOLS, env: { FERRY_FAILPOINTS: 'migrate:after-restore' } });
  let c: TestCluster;
  before(() => { c = cluster.c; });

  it('rolls back; the source is connected again; the held connection carries on; the returning target removes its copy', async () => {
    await crashAndRecover(c, 'Restore', 1);
  });
});

describe('source agent killed after its dump, on the cluster network', { skip: skipUnlessReady(TOOLS) }, () => {
  // Every agent has the failpoint; only a source dumps.
  const cluster = useCluster({ nodes: 2, tools: TOOLS, env: { FERRY_FAILPOINTS: 'migrate:after-dump' } });
  let c: TestCluster;
  before(() => { c = cluster.c; });

  it('rolls back; the returning source thaws its copy and connects it again; the held connection carries on', async () => {
    await crashAndRecover(c, 'Freeze', 0);
  });
});
