/**
 * Host failure on simulated hosts (`ferry up --nodes 2`): a host cut off by iptables in its own
 * namespace, and an agent killed with SIGKILL. Each time the lost host's containers are killed by
 * their fence (the shims' watchdog) before the manager declares the host Down and starts them
 * elsewhere with a higher epoch; a writer that appends epoch-stamped lines to a shared volume proves
 * there was never a moment with two writers; a container that may not fail over (restart policy
 * "no") stays and runs again when its host returns; the returning host does not resurrect what
 * moved away. A whole host killed at once (agent, shims, containers) fails over the same way. A
 * manager that is down for everyone fences nothing.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { netnsInode, netnsOfPid, useCluster, type SimHostInfo, type TestCluster } from './support/cluster.ts';
import { skipUnlessReady } from './support/prereq.ts';
import { until } from './support/wait.ts';
import { runcList } from './support/ferry.ts';
import type { ClusterEvent, FenceToken } from '../src/model/index.ts';

const TOOLS = ['runc', 'ip', 'iptables', 'ebtables', 'bridge', 'nsenter', '/usr/bin/busybox'];
// Appends "<epoch> <node> <n>" ten times a second to the shared volume.
const WRITER = 'i=0; while :; do i=$((i+1)); echo "$FERRY_EPOCH $FERRY_NODE $i" >> /data/log; usleep 100000; done';

/** The writer's lines, in file order. */
function lines(c: TestCluster): { epoch: number; node: string; n: number }[] {
  const text = readFileSync(join(c.home, 'shared-volumes', 'wdata', 'data', 'log'), 'utf8');
  return text.split('\n').filter((l) => l !== '').map((l) => {
    const [epoch, node, n] = l.split(' ');
    return { epoch: Number(epoch), node: node!, n: Number(n) };
  });
}

/** Asserts the file never mixes writers: epochs only go up, and each epoch has one node. */
function assertOneWriterAtATime(c: TestCluster, wantEpochs: number[]): void {
  const ls = lines(c);
  const seen: number[] = [];
  const nodeOf = new Map<number, string>();
  for (const [i, l] of ls.entries()) {
    if (seen.length > 0 && l.epoch < seen[seen.length - 1]!) assert.fail(`line ${i + 1} is from epoch ${l.epoch} after epoch ${seen[seen.length - 1]} had written: two writers at once`);
    if (seen[seen.length - 1] !== l.epoch) seen.push(l.epoch);
    if (nodeOf.has(l.epoch) && nodeOf.get(l.epoch) !== l.node) assert.fail(`epoch ${l.epoch} written from ${nodeOf.get(l.epoch)} and ${l.node}`);
    nodeOf.set(l.epoch, l.node);
  }
  assert.deepEqual(seen, wantEpochs, 'the epochs that wrote, in order');
}

async function nodeState(c: TestCluster, node: string): Promise<string> {
  return (await c.client.nodes.get(node)).state;
}

async function placedOn(c: TestCluster, name: string, node: string, epoch: number): Promise<void> {
  await until(`${name} to run on ${node} at epoch ${epoch}`, async () => {
    const v = await c.client.containers.get(name);
    return v.status?.phase === 'running' && v.status.node === node && v.container.placement?.epoch === epoch ? true : undefined;
  }, 60_000);
}

/**
 * Every process of a simulated host: those in its network namespace (agent, shims) and those in its
 * cgroup parent (the containers, which have namespaces of their own).
 */
function hostProcesses(h: SimHostInfo): number[] {
  const ns = netnsInode(h.netns);
  assert.ok(ns !== undefined, `the namespace of ${h.node} exists`);
  const pids = new Set(readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map(Number).filter((p) => netnsOfPid(p) === ns));
  const walk = (dir: string): void => {
    if (!existsSync(dir)) return;
    for (const l of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n')) if (l !== '') pids.add(Number(l));
    for (const d of readdirSync(dir, { withFileTypes: true })) if (d.isDirectory()) walk(join(dir, d.name));
  };
  walk(join('/sys/fs/cgroup/pids', h.cgroupParent));
  return [...pids].filter((p) => p !== process.pid).sort((x, y) => x - y);
}

async function events(c: TestCluster): Promise<ClusterEvent[]> {
  return c.client.nodes.events(1000);
}

describe('host failure: fencing and failover', { skip: skipUnlessReady(TOOLS) }, () => {
  const cluster = useCluster({ nodes: 2, tools: TOOLS });
  let c: TestCluster;
  before(() => { c = cluster.c; });

  it('a host cut off by its firewall fences its containers before they restart elsewhere; it comes back without them', async () => {
    const [a, b] = c.hosts;
    // Both on host b: cordon a while they are placed.
    await c.ok(['node', 'cordon', a!.node]);
    await c.ok(['run', '--name', 'w', '--restart', 'always', '--shared-volume', 'wdata:/data', '--entrypoint', '/bin/sh', 'sample', '--', '-c', WRITER]);
    await c.ok(['run', '--name', 'keep', 'sample']);
    await placedOn(c, 'w', b!.node, 1);
    await placedOn(c, 'keep', b!.node, 1);
    await c.ok(['node', 'uncordon', a!.node]);
    await until('the writer to write', async () => (lines(c).length >= 5 ? true : undefined));

    // Cut host b off: nothing in or out of its underlay interface.
    await c.exec(1, ['iptables', '-I', 'INPUT', '-i', 'eth0', '-j', 'DROP']);
    await c.exec(1, ['iptables', '-I', 'OUTPUT', '-o', 'eth0', '-j', 'DROP']);
    const cut = Date.now();
    try {
      await until(`${b!.node} to be Suspect or Down`, async () => (['Suspect', 'Down'].includes(await nodeState(c, b!.node)) ? true : undefined), 30_000);
      const suspectMs = Date.now() - cut;
      await until(`${b!.node} to be Down`, async () => ((await nodeState(c, b!.node)) === 'Down' ? true : undefined), 30_000);
      const downMs = Date.now() - cut;
      await placedOn(c, 'w', a!.node, 2);
      const runningMs = Date.now() - cut;
      console.log(`# cut off → Suspect ${suspectMs} ms, Down ${downMs} ms, replacement running ${runningMs} ms`);
      const token = JSON.parse(readFileSync(join(c.home, 'shared-volumes', 'wdata', 'fence.json'), 'utf8')) as FenceToken;
      assert.deepEqual([token.epoch, token.node], [2, a!.node], 'the new placement holds the volume');
      // "keep" (restart policy no) stays placed on the Down host, and says why.
      const keep = await c.client.containers.get('keep');
      assert.equal(keep.container.placement?.node, b!.node);
      await until('the writer to write from the new host', async () => (lines(c).some((l) => l.epoch === 2) ? true : undefined));
    } finally {
      await c.exec(1, ['iptables', '-D', 'INPUT', '-i', 'eth0', '-j', 'DROP']);
      await c.exec(1, ['iptables', '-D', 'OUTPUT', '-o', 'eth0', '-j', 'DROP']);
    }
    // Back: Ready once nothing that failed over is placed there; its copy of w is removed, "keep" runs again.
    await until(`${b!.node} to be Ready again`, async () => ((await nodeState(c, b!.node)) === 'Ready' ? true : undefined), 60_000);
    await placedOn(c, 'keep', b!.node, 1);
    await until(`the fenced copy of w to be removed from ${b!.node}`, async () => {
      const w = (await c.client.containers.get('w')).status!.runtimeId;
      return runcList(b!.runcRoot).includes(w) ? undefined : runcList(b!.runcRoot).length === 1 ? true : undefined;
    }, 60_000);
    assert.equal((await c.client.containers.get('w')).status?.node, a!.node, 'w still runs on the host it failed over to');
    await until('the writer to write on', async () => (lines(c).filter((l) => l.epoch === 2).length >= 10 ? true : undefined));
    assertOneWriterAtATime(c, [1, 2]);
    const kinds = (await events(c)).map((e) => `${e.kind} ${e.object}`);
    for (const want of [`NodeSuspect node/${b!.node}`, `NodeDown node/${b!.node}`, 'Failover container/w', 'FailoverRefused container/keep', `NodeReady node/${b!.node}`]) {
      assert.ok(kinds.includes(want), `event "${want}" in ${JSON.stringify(kinds)}`);
    }
    await c.ok(['rm', '-f', 'keep']);
  });

  it('an agent killed with SIGKILL: its shims fence the containers, which fail over; the restarted agent does not resurrect them', async () => {
    const [a, b] = c.hosts;
    // w runs on host a (epoch 2) after the first test.
    await placedOn(c, 'w', a!.node, 2);
    const pid = a!.agentPid();
    assert.ok(pid, 'the agent of host a runs');
    process.kill(pid, 'SIGKILL');
    await until(`${a!.node} to be Down`, async () => ((await nodeState(c, a!.node)) === 'Down' ? true : undefined), 30_000);
    await placedOn(c, 'w', b!.node, 3);
    await a!.restartAgent();
    await until(`${a!.node} to be Ready again`, async () => ((await nodeState(c, a!.node)) === 'Ready' ? true : undefined), 60_000);
    await until(`the fenced copy to be removed from ${a!.node}`, async () => (runcList(a!.runcRoot).length === 0 ? true : undefined), 60_000);
    await until('the writer to write from epoch 3', async () => (lines(c).filter((l) => l.epoch === 3).length >= 10 ? true : undefined));
    assertOneWriterAtATime(c, [1, 2, 3]);
  });

  it('a whole host killed (agent, shims and containers, as in a power loss): its containers fail over; the restarted host does not resurrect them', async () => {
    const [a, b] = c.hosts;
    // w runs on host b (epoch 3) after the second test.
    await placedOn(c, 'w', b!.node, 3);
    const victims = hostProcesses(b!);
    const writerPid = (await c.client.containers.get('w')).status!.pid;
    assert.ok(victims.includes(b!.agentPid()!) && victims.includes(writerPid), `the agent and the writer are among host b's processes: ${victims.join(' ')}`);
    for (const pid of victims) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone already */ }
    }
    await until(`every process of ${b!.node} to be gone`, async () => (hostProcesses(b!).length === 0 ? true : undefined), 10_000);
    await until(`${b!.node} to be Down`, async () => ((await nodeState(c, b!.node)) === 'Down' ? true : undefined), 30_000);
    await placedOn(c, 'w', a!.node, 4);
    // Power back on: the agent starts again over what the dead host left (runc state, records, links).
    await b!.restartAgent();
    await until(`${b!.node} to be Ready again`, async () => ((await nodeState(c, b!.node)) === 'Ready' ? true : undefined), 60_000);
    await until(`the dead copy to be removed from ${b!.node}`, async () => (runcList(b!.runcRoot).length === 0 ? true : undefined), 60_000);
    assert.equal((await c.client.containers.get('w')).status?.node, a!.node, 'w still runs on the host it failed over to');
    await until('the writer to write from epoch 4', async () => (lines(c).filter((l) => l.epoch === 4).length >= 10 ? true : undefined));
    assertOneWriterAtATime(c, [1, 2, 3, 4]);
  });

  it('a manager that is down for every host fences nothing', async () => {
    const [a] = c.hosts;
    await placedOn(c, 'w', a!.node, 4);
    const before = (await c.client.containers.get('w')).status!;
    await c.stopManager();
    // Longer than the fence limit (lease 6 s + grace 3 s − 2 s): the agents must have asked each other.
    await new Promise((r) => setTimeout(r, 12_000));
    await c.restartManager();
    await until('both hosts Ready', async () => ((await c.client.nodes.list()).every((n) => n.state === 'Ready') ? true : undefined), 30_000);
    const after = (await c.client.containers.get('w')).status!;
    assert.deepEqual([after.phase, after.node, after.pid, after.epoch], ['running', a!.node, before.pid, 4], 'the same process runs on');
    const n = lines(c).length;
    await until('the writer to write on', async () => (lines(c).length > n + 5 ? true : undefined));
    assertOneWriterAtATime(c, [1, 2, 3, 4]);
    await c.ok(['rm', '-f', 'w']);
  });
});
