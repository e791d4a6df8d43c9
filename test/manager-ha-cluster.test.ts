/**
 * Control-plane HA end to end: `ferry up --nodes 2 --managers 3` (three managers electing a leader over
 * a 3-member etcd, real agents in two simulated hosts, runc and CRIU). The leader is killed with
 * SIGKILL while containers run, then in the middle of a live migration; an etcd member is killed and
 * restarted while containers are created. Each time the next leader carries on, and every container
 * runs exactly once. Failover times are printed, never asserted (they depend on the machine).
 */
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { useCluster, type TestCluster } from './support/cluster.ts';
import { runcList } from './support/ferry.ts';
import { skipUnlessReady } from './support/prereq.ts';
import { until } from './support/wait.ts';
import { MIGRATION_TOOLS, counterAt, ipOf, migrationEnd } from './support/two-nodes.ts';
import { ETCD_BIN, raftLeader } from './support/etcd.ts';
import type { ContainerView } from '../src/model/index.ts';

const TOOLS = [...MIGRATION_TOOLS, ETCD_BIN];

/** The sample app's counter at `ip` (GET /count does not count itself), read from inside host A (`timeout` bounds busybox wget, whose -T crashes). */
async function countAt(c: TestCluster, ip: string): Promise<number> {
  return until(`the counter at ${ip}`, async () => {
    const r = await c.exec(0, ['timeout', '3', '/usr/bin/busybox', 'wget', '-qO-', `http://${ip}/count`]);
    if (r.code !== 0) throw new Error(`wget exit ${r.code}: ${r.stderr.trim()}`);
    return (JSON.parse(r.stdout) as { count: number }).count;
  }, 30_000);
}

/** Container `name` once it runs, as the API shows it. */
function running(c: TestCluster, name: string, ms = 90_000): Promise<ContainerView> {
  return until(`${name} to run`, async () => {
    const v = await c.client.containers.get(name);
    return v.status?.phase === 'running' ? v : undefined;
  }, ms);
}

/** The etcd member that is raft leader now (the harshest one to lose), asked through the v3 gateway's status call. */
async function etcdLeader(members: { name: string; clientUrl: string }[]): Promise<string> {
  return (members[await raftLeader(members.map((m) => m.clientUrl))] as { name: string }).name;
}

/** Every runc container on the two hosts, as `host: id`. */
function runcEverywhere(c: TestCluster): string[] {
  return c.hosts.flatMap((h) => runcList(h.runcRoot).map((id) => `${h.node}: ${id}`));
}

describe('three managers on etcd with real agents on two simulated hosts', { skip: skipUnlessReady(TOOLS) }, () => {
  const h = useCluster({ nodes: 2, managers: 3, tools: TOOLS });

  afterEach(async () => {
    const { c } = h;
    if (!c) return;
    // The next case starts with three managers again and no containers.
    await c.reviveManagers();
    await Promise.all((await c.client.containers.list()).map((v) => c.client.containers.remove(v.container.metadata.name, { wait: true, force: true })));
    await until('no container on either host', () => (runcEverywhere(c).length === 0 ? true : undefined), 60_000);
  });

  it('after kill -9 of the leader another leads; a container runs on with the same pid; new ones start', async (t) => {
    const { c } = h;
    const [a, b] = c.hosts;
    assert.equal(c.managerPids().filter((m) => m.pid !== undefined).length, 3);
    await c.ok(['run', '--name', 'keep', '--node', a!.node, '--restart', 'always', 'sample']);
    const before = await running(c, 'keep');

    const killed = await c.killLeader();
    const next = await c.waitLeader(killed.name);
    // The CLI and the agents are given all three URLs and follow the leader.
    await c.ok(['run', '--name', 'fresh', '--node', b!.node, 'sample']);
    const fresh = await running(c, 'fresh');
    const servedAt = performance.now();

    // `ferry dashboard` points at the leader (standbys serve no page), whichever URL comes first in the list.
    const dash = await c.json<{ url: string }>(['dashboard']);
    assert.ok(dash.url.startsWith(`${next.url}/ui/#token=`), `dashboard ${dash.url.replace(/#.*/, '')} is the leader's (${next.url})`);
    const page = await c.exec(0, ['timeout', '5', '/usr/bin/busybox', 'wget', '-qO-', dash.url.replace(/#.*/, '')]);
    assert.equal(page.code, 0, `the leader serves the dashboard page: ${page.stderr}`);
    // --join takes the same comma list (checked before anything starts).
    const bad = await c.cli(['agent', '--join', `${c.managerUrl},not a url`, '--token', 'x']);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /--join needs manager API URLs \(several separated by commas\)/);

    const after = await running(c, 'keep');
    assert.equal(after.status!.pid, before.status!.pid, 'keep ran on: same pid');
    assert.equal(after.status!.runtimeId, before.status!.runtimeId);
    assert.deepEqual(runcEverywhere(c).sort(), [`${a!.node}: ${before.status!.runtimeId}`, `${b!.node}: ${fresh.status!.runtimeId}`].sort());
    t.diagnostic(`leader failover (lease TTL 5 s): ${killed.name} killed -> ${next.name} leads after ${Math.round(next.seenAt - killed.killedAt)} ms; a new container ran after ${Math.round(servedAt - killed.killedAt)} ms`);
  });

  it('the leader killed in the Copy phase of a live migration: the next one ends it; the container runs once, its counter intact', async (t) => {
    const { c } = h;
    const [a, b] = c.hosts;
    // 64 MiB of ballast at 2 MiB/s: a pre-copy round lasts half a minute, a wide window to kill the leader in.
    await c.ok(['run', '--name', 'web', '--node', a!.node, '-e', 'BALLAST_MB=64', 'sample']);
    const ip = await ipOf(c, 'web');
    // Three counted requests: a restarted process would be back at 0.
    for (let i = 0; i < 3; i++) await counterAt(c, ip);
    const first = await countAt(c, ip);
    assert.equal(first, 3);
    const m0 = await c.client.migrations.create({ container: 'web', to: b!.node, strategy: 'pre-copy', bandwidthBytesPerSec: 2 * 1024 * 1024 });
    const id = m0.metadata.name;
    await until('the migration to copy', async () => ((await c.client.migrations.get(id)).status.phase === 'Copy' ? true : undefined), 60_000);

    const killed = await c.killLeader();
    const next = await c.waitLeader(killed.name);
    const m = await migrationEnd(c, id);
    const endedAt = performance.now();
    assert.ok(['Succeeded', 'RolledBack'].includes(m.status.phase), `migration ended ${m.status.phase}: ${JSON.stringify(m.status)}`);

    const host = m.status.phase === 'Succeeded' ? b! : a!;
    const v = await until(`web to run on ${host.node}`, async () => {
      const x = await c.client.containers.get('web');
      return x.status?.phase === 'running' && x.status.node === host.node ? x : undefined;
    }, 60_000);
    assert.equal(v.container.placement?.node, host.node);
    // Exactly once: the other host's copy (a target's restore, or the frozen source) is gone.
    await until('one copy of web in all', () => (runcEverywhere(c).length === 1 ? true : undefined), 60_000);
    assert.deepEqual(runcEverywhere(c), [`${host.node}: ${v.status!.runtimeId}`]);
    assert.equal(await countAt(c, v.status!.ip!), first, 'the same process runs on (in-memory counter not reset)');
    t.diagnostic(`leader killed in Copy: ${killed.name} -> ${next.name} leads after ${Math.round(next.seenAt - killed.killedAt)} ms; migration ${m.status.phase}${m.status.error ? ` (${m.status.error})` : ''} ${Math.round(endedAt - killed.killedAt)} ms after the kill`);
  });

  it('an etcd member killed and restarted while containers are created: everything keeps working', async (t) => {
    const { c } = h;
    const members = c.etcdMembers();
    assert.equal(members.filter((m) => m.pid !== undefined).length, 3);
    const names = ['e-1', 'e-2', 'e-3', 'e-4', 'e-5', 'e-6'];
    const took: number[] = [];
    // Creations run on while the member dies and comes back.
    const creating = (async () => {
      for (const [k, name] of names.entries()) {
        const t1 = performance.now();
        await c.ok(['run', '--name', name, '--node', c.hosts[k % 2]!.node, 'sample']);
        took.push(Math.round(performance.now() - t1));
        await new Promise((r) => setTimeout(r, 500));
      }
    })();
    const victim = await etcdLeader(members);
    await new Promise((r) => setTimeout(r, 700));
    await c.killEtcdMember(victim);
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 2000));
    await c.restartEtcdMember(victim);
    const back = performance.now() - t0;
    await creating;
    const views = await Promise.all(names.map((n) => running(c, n)));
    assert.deepEqual(runcEverywhere(c).sort(), views.map((v) => `${v.status!.node}: ${v.status!.runtimeId}`).sort());
    assert.ok(await c.leader(), 'a manager leads');
    assert.equal(c.etcdMembers().filter((m) => m.pid !== undefined).length, 3);
    t.diagnostic(`etcd raft leader ${victim} killed; back and healthy after ${Math.round(back)} ms; ${names.length} containers created meanwhile all run (each \`ferry run\` took ${took.join(', ')} ms)`);
  });
});
