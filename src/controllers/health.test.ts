import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { openStore, put, type Store } from '../store/index.ts';
import { failoverRefusal, keys, defaultSpec, type Assignment, type ClusterEvent, type Container, type NodeHealth, type Node } from '../model/index.ts';
import { noteHeartbeat, reconcileContainer, startHealthController } from './index.ts';

function node(name: string): Node {
  return {
    apiVersion: 'ferry/v1', kind: 'Node', metadata: { name, uid: name, createdAt: '', labels: {} }, spec: { unschedulable: false },
    status: {
      address: 'http://x', capacity: { cpus: 2, memoryBytes: 4 * 1024 ** 3 }, agentVersion: 't', startedAt: '', heartbeatAt: '',
      facts: { hostname: '', kernel: '', arch: '', os: '', runc: '', criu: '', cgroupVersion: 1, overlay: true, cpuModel: '', cpuFlags: [] },
    },
  };
}
function container(name: string, over: Partial<Container['spec']> = {}): Container {
  return {
    apiVersion: 'ferry/v1', kind: 'Container', metadata: { name, uid: `uid-${name}`, createdAt: '', generation: 1 },
    spec: { ...defaultSpec('sample'), ...over },
    placement: { node: 'n2', epoch: 4, scheduledAt: '', reason: '' },
  };
}
const health = async (store: Store, n: string): Promise<NodeHealth | undefined> => (await store.get<NodeHealth>(keys.nodeHealth(n)))?.value;
const until = async (what: string, fn: () => Promise<boolean>): Promise<void> => {
  for (let i = 0; i < 200; i++) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`timed out waiting for ${what}`);
};

describe('failover refusals', () => {
  it('a restart policy or a service label may fail over; host data, a pin or policy "no" stay, each with its reason', () => {
    assert.equal(failoverRefusal(container('a', { restart: { policy: 'always', maxRetries: 0 } }).spec), undefined);
    assert.equal(failoverRefusal(container('r', { labels: { 'ferry.io/service': 'api' } }).spec), undefined);
    assert.equal(failoverRefusal(container('s', { restart: { policy: 'always', maxRetries: 0 }, volumes: [{ source: 'd', target: '/d', readOnly: false, kind: 'shared' }] }).spec), undefined);
    assert.match(failoverRefusal(container('n').spec)!, /restart policy is "no"/);
    assert.match(failoverRefusal(container('l', { restart: { policy: 'always', maxRetries: 0 }, volumes: [{ source: 'd', target: '/d', readOnly: false, kind: 'local' }] }).spec)!, /host-local volume "d"/);
    assert.match(failoverRefusal(container('b', { restart: { policy: 'always', maxRetries: 0 }, volumes: [{ source: '/srv', target: '/d', readOnly: false }] }).spec)!, /host directory \/srv/);
    assert.match(failoverRefusal(container('p', { restart: { policy: 'always', maxRetries: 0 }, node: 'n2' }).spec)!, /pinned to node n2/);
  });
});

describe('health controller', () => {
  let store: Store;
  beforeEach(async () => {
    store = await openStore('memory:');
    for (const n of ['n1', 'n2']) await put(store, keys.node(n), node(n));
    await put(store, keys.nodeAlive('n1'), {});
  });
  afterEach(async () => { await store.close(); });

  it('a lapsed lease makes the node Suspect, the grace Down; a movable container fails over with the next epoch, the rest stay', async () => {
    const moving = container('web', { restart: { policy: 'always', maxRetries: 0 } });
    await put(store, keys.container('web'), moving);
    await put(store, keys.assignment('n2', 'web'), { name: 'web', uid: moving.metadata.uid, generation: 1, epoch: 4, spec: moving.spec } satisfies Assignment);
    await put(store, keys.container('keep'), container('keep'));
    const loop = startHealthController({ store, timing: { leaseTtlSeconds: 1, graceSeconds: 0.2 }, log: () => undefined, tickMs: 20 });
    try {
      await until('n2 Down', async () => (await health(store, 'n2'))?.state === 'Down');
      await until('web unplaced', async () => (await store.get<Container>(keys.container('web')))!.value.placement === undefined);
      assert.equal(await store.get(keys.assignment('n2', 'web')), undefined, 'the Down node loses the assignment');
      assert.deepEqual((await store.get<Container>(keys.container('web')))!.value.failover?.epoch, 4);
      assert.equal((await store.get<Container>(keys.container('keep')))!.value.placement?.node, 'n2', 'policy "no" stays');
      assert.equal((await health(store, 'n1'))?.state ?? 'Ready', 'Ready');
      // The containers controller places it on the ready node at epoch 5.
      await reconcileContainer(store, 'web');
      const placed = (await store.get<Container>(keys.container('web')))!.value.placement!;
      assert.deepEqual([placed.node, placed.epoch], ['n1', 5]);
      assert.match(placed.reason, /failover from n2/);
      // n2 returns: Ready again (nothing movable left on it); a heartbeat meanwhile hears Down until then.
      await put(store, keys.nodeAlive('n2'), {});
      await until('n2 Ready', async () => (await health(store, 'n2'))?.state === 'Ready');
      const kinds = (await store.list<ClusterEvent>(keys.events)).items.map((kv) => `${kv.value.kind} ${kv.value.object}`);
      const seen = kinds.filter((k) => k.includes('n2') || k.includes('container/'));
      // Containers are looked at in key order (keep before web).
      assert.deepEqual(seen, ['NodeSuspect node/n2', 'NodeDown node/n2', 'FailoverRefused container/keep', 'Failover container/web', 'NodeReady node/n2']);
    } finally {
      await loop.stop();
    }
  });

  it('a heartbeat while Suspect wins the race: the node is Ready and nothing fails over', async () => {
    await put(store, keys.nodeHealth('n2'), { state: 'Suspect', since: new Date().toISOString(), reason: 'test' } satisfies NodeHealth);
    assert.equal(await noteHeartbeat(store, 'n2'), 'Ready');
    assert.equal((await health(store, 'n2'))?.state, 'Ready');
    await put(store, keys.nodeHealth('n2'), { state: 'Down', since: new Date().toISOString(), reason: 'test' } satisfies NodeHealth);
    assert.equal(await noteHeartbeat(store, 'n2'), 'Down', 'a Down node stays Down until the controller says otherwise');
    assert.equal(await noteHeartbeat(store, 'n1'), 'Ready', 'no record yet: Ready');
  });

  it('a lease that lapses is looked at at once, and Down comes when the grace ends, without waiting for a tick', async () => {
    await put(store, keys.nodeAlive('n2'), {});
    const loop = startHealthController({ store, timing: { leaseTtlSeconds: 1, graceSeconds: 0.3 }, log: () => undefined, tickMs: 600_000 });
    try {
      await new Promise((r) => setTimeout(r, 50));
      await store.delete(keys.nodeAlive('n2'));
      const lapsed = Date.now();
      await until('n2 Suspect', async () => (await health(store, 'n2'))?.state === 'Suspect');
      await until('n2 Down', async () => (await health(store, 'n2'))?.state === 'Down');
      assert.ok(Date.now() - lapsed >= 300, 'not before the grace');
      assert.equal((await health(store, 'n1'))?.state ?? 'Ready', 'Ready');
    } finally {
      await loop.stop();
    }
  });

  it('a restarted controller gives every node the full grace (a Suspect left in the store is not Down at once)', async () => {
    await put(store, keys.nodeHealth('n2'), { state: 'Suspect', since: new Date(Date.now() - 3600_000).toISOString(), reason: 'old' } satisfies NodeHealth);
    const loop = startHealthController({ store, timing: { leaseTtlSeconds: 1, graceSeconds: 0.5 }, log: () => undefined, tickMs: 20 });
    try {
      await new Promise((r) => setTimeout(r, 200));
      assert.equal((await health(store, 'n2'))?.state, 'Suspect', 'still within the grace counted from this start');
      await until('n2 Down', async () => (await health(store, 'n2'))?.state === 'Down');
    } finally {
      await loop.stop();
    }
  });
});
