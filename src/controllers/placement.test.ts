import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { openStore, put, type Store } from '../store/index.ts';
import { keys, defaultSpec, type Container, type ContainerStatus, type Node, type NodeHealth } from '../model/index.ts';
import { ClusterPlacer, fullScanPlacer, reconcileContainer, startContainersController, type Placer } from './index.ts';

const GiB = 1024 ** 3;
function node(name: string, labels: Record<string, string> = {}): Node {
  return {
    apiVersion: 'ferry/v1', kind: 'Node', metadata: { name, uid: name, createdAt: '', labels }, spec: { unschedulable: false },
    status: {
      address: 'http://x', capacity: { cpus: 2, memoryBytes: 4 * GiB }, agentVersion: 't', startedAt: '', heartbeatAt: '',
      facts: { hostname: '', kernel: '', arch: '', os: '', runc: '', criu: '', cgroupVersion: 1, overlay: true, cpuModel: '', cpuFlags: [] },
    },
  };
}
function container(name: string, over: Partial<Container['spec']> = {}, memoryBytes?: number): Container {
  return {
    apiVersion: 'ferry/v1', kind: 'Container', metadata: { name, uid: `uid-${name}`, createdAt: '', generation: 1 },
    spec: { ...defaultSpec('sample'), resources: { memoryBytes }, ...over },
  };
}
async function addNode(store: Store, name: string, labels: Record<string, string> = {}): Promise<void> {
  await put(store, keys.node(name), node(name, labels));
  await put(store, keys.nodeAlive(name), {});
}
const get = async (store: Store, name: string): Promise<Container> => (await store.get<Container>(keys.container(name)))!.value;
const pending = async (store: Store, name: string): Promise<string | undefined> => (await store.get<ContainerStatus>(keys.status(name)))?.value.message;
const until = async (what: string, fn: () => boolean | Promise<boolean>): Promise<void> => {
  for (let i = 0; i < 500; i++) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`timed out waiting for ${what}`);
};

/** A mixed stream: plain, sized, service replicas (one per host for some), classed, pinned, constrained. */
function stream(): Container[] {
  const out: Container[] = [];
  for (let i = 0; i < 24; i++) {
    const labels: Record<string, string> = i % 3 === 0 ? { 'ferry.io/service': `svc${i % 2}` } : {};
    const scheduling = i % 4 === 0 ? { workloadClass: i % 8 === 0 ? 'cpu' : 'io' } : i % 5 === 0 ? { constraints: ['disk==ssd'] } : i % 7 === 0 ? { strategy: 'binpack' as const } : undefined;
    out.push(container(`c${String(i).padStart(2, '0')}`, { labels, ...(scheduling ? { scheduling } : {}), ...(i === 9 ? { node: 'n3' } : {}), resources: { memoryBytes: (i % 4) * 0.5 * GiB, cpus: (i % 3) * 0.25 } }));
  }
  return out;
}

describe('ClusterPlacer', () => {
  let store: Store;
  let placer: ClusterPlacer;
  beforeEach(async () => {
    store = await openStore('memory:');
    placer = new ClusterPlacer(store);
  });
  afterEach(async () => {
    await placer.stop();
    await store.close();
  });

  it('makes the decisions and writes the reasons the full scan does, building once for a stream', async () => {
    const run = async (s: Store, p: Placer): Promise<unknown[]> => {
      await addNode(s, 'n1', { disk: 'ssd' });
      await addNode(s, 'n2');
      await addNode(s, 'n3', { disk: 'ssd' });
      await put<NodeHealth>(s, keys.nodeHealth('n2'), { state: 'Ready', since: '', reason: '' });
      const out: unknown[] = [];
      for (const c of stream()) {
        await put(s, keys.container(c.metadata.name), c);
        await reconcileContainer(s, c.metadata.name, p);
        const got = await get(s, c.metadata.name);
        out.push([c.metadata.name, got.placement?.node, got.placement?.reason, got.placement ? undefined : await pending(s, c.metadata.name)]);
      }
      return out;
    };
    const other = await openStore('memory:');
    try {
      const want = await run(other, fullScanPlacer(other));
      assert.deepEqual(await run(store, placer), want);
      assert.ok(want.some((x) => (x as unknown[])[1] === undefined), 'the stream fills the nodes: some wait');
    } finally {
      await other.close();
    }
    assert.equal(placer.stats.decisions, 24);
    assert.equal(placer.stats.builds, 1, 'its own writes do not make it list again');
  });

  it('never gives two concurrent placements room only one fits in', async () => {
    await addNode(store, 'n1');
    for (const n of ['a', 'b', 'c']) await put(store, keys.container(n), container(n, {}, 3 * GiB));
    await Promise.all(['a', 'b', 'c'].map((n) => reconcileContainer(store, n, placer)));
    const placed = await Promise.all(['a', 'b', 'c'].map(async (n) => (await get(store, n)).placement?.node));
    assert.deepEqual(placed.filter((x) => x === 'n1').length, 1);
    const waiting = ['a', 'b', 'c'].filter((_, i) => placed[i] === undefined);
    for (const n of waiting) assert.match((await pending(store, n))!, /n1: not enough memory: needs 3221225472 B, 1073741824 B free/);
  });

  it('lists again after a container is moved by someone else, and places by where it is now', async () => {
    await addNode(store, 'n1');
    await addNode(store, 'n2');
    await put(store, keys.container('a'), container('a', {}, 3 * GiB));
    await reconcileContainer(store, 'a', placer);
    const a = await get(store, 'a');
    assert.equal(a.placement?.node, 'n1');
    assert.ok(placer.fresh);
    // As a migration's switch does: the placement moves to n2.
    await put(store, keys.container('a'), { ...a, placement: { ...a.placement!, node: 'n2', epoch: 2 } });
    await until('the placer drops its view', () => !placer.fresh);
    await put(store, keys.container('b'), container('b', {}, 3 * GiB));
    await reconcileContainer(store, 'b', placer);
    assert.equal((await get(store, 'b')).placement?.node, 'n1', 'n2 is full now, n1 free');
    assert.equal(placer.stats.builds, 2);
  });

  it('lists again when a node dies, goes Suspect or a container is removed', async () => {
    await addNode(store, 'n1');
    await addNode(store, 'n2');
    await put(store, keys.container('a'), container('a'));
    await reconcileContainer(store, 'a', placer);
    assert.ok(placer.fresh);

    await store.delete(keys.nodeAlive('n1'));
    await until('dropped on the alive key', () => !placer.fresh);
    await put(store, keys.container('b'), container('b'));
    await reconcileContainer(store, 'b', placer);
    assert.equal((await get(store, 'b')).placement?.node, 'n2');

    await put(store, keys.nodeAlive('n1'), {});
    await put<NodeHealth>(store, keys.nodeHealth('n2'), { state: 'Suspect', since: '', reason: 'test' });
    await until('dropped on the health record', () => !placer.fresh);
    await put(store, keys.container('c'), container('c'));
    await reconcileContainer(store, 'c', placer);
    assert.equal((await get(store, 'c')).placement?.node, 'n1', 'a Suspect node takes nothing new');

    await store.delete(keys.container('a'));
    await until('dropped on the removal', () => !placer.fresh);
    assert.equal(placer.stats.builds, 3);
  });

  it('keeps the failover epoch and reason, and a pin', async () => {
    await addNode(store, 'n1');
    await addNode(store, 'n2');
    await put(store, keys.container('f'), { ...container('f'), failover: { from: 'n9', epoch: 4, at: '' } });
    await put(store, keys.container('p'), container('p', { node: 'n2' }));
    await reconcileContainer(store, 'f', placer);
    await reconcileContainer(store, 'p', placer);
    const f = (await get(store, 'f')).placement!;
    assert.equal(f.epoch, 5);
    assert.match(f.reason, /^failover from n9 \(Down\): score /);
    assert.equal((await get(store, 'p')).placement?.node, 'n2');
  });

  it('a placement not written is taken back; one written with other figures drops its view', async () => {
    await addNode(store, 'n1');
    await put(store, keys.container('a'), container('a', {}, 3 * GiB));
    await put(store, keys.container('b'), container('b', {}, 3 * GiB));
    assert.equal((await placer.place(await get(store, 'a'), async () => undefined)).ok, true);
    await assert.rejects(placer.place(await get(store, 'a'), async () => { throw new Error('boom'); }), /boom/);
    assert.ok(placer.fresh);
    await reconcileContainer(store, 'b', placer);
    assert.equal((await get(store, 'b')).placement?.node, 'n1', 'the room a never took is free');
    assert.equal(placer.stats.builds, 1);
    // Its spec changed between the decision and the write: the memory counted would be wrong.
    await put(store, keys.container('c'), container('c', {}, GiB / 2));
    await placer.place(await get(store, 'c'), async (d) => put(store, keys.container('c'), { ...container('c', {}, GiB), placement: { node: d.node, epoch: 1, scheduledAt: '', reason: d.reason } }));
    assert.equal(placer.fresh, false);
  });
});

describe('containers controller placement', () => {
  let store: Store;
  beforeEach(async () => { store = await openStore('memory:'); });
  afterEach(async () => { await store.close(); });

  for (const placement of ['incremental', 'full-scan'] as const) {
    it(`${placement}: a burst fills the nodes to capacity and no further`, async () => {
      for (const n of ['n1', 'n2', 'n3']) await addNode(store, n);
      const loop = startContainersController(store, (name, e) => assert.fail(`${name}: ${String(e)}`), { placement });
      try {
        for (let i = 0; i < 10; i++) await put(store, keys.container(`c${i}`), container(`c${i}`, {}, 2 * GiB));
        const placed = async (): Promise<Container[]> => (await store.list<Container>(keys.containers)).items.map((kv) => kv.value).filter((c) => c.placement);
        await until('six placed', async () => (await placed()).length === 6);
        await until('four pending', async () => (await store.list<ContainerStatus>(keys.statuses)).items.length === 4);
        await loop.idle();
        const per = new Map<string, number>();
        for (const c of await placed()) per.set(c.placement!.node, (per.get(c.placement!.node) ?? 0) + 1);
        assert.deepEqual([...per.entries()].sort(), [['n1', 2], ['n2', 2], ['n3', 2]]);
      } finally {
        await loop.stop();
      }
    });
  }
});
