import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { openStore, put, type Store } from '../store/index.ts';
import { keys, defaultSpec, clusterNetworkOf, type AddressLease, type Assignment, type Container, type ContainerStatus, type Network, type Node } from '../model/index.ts';
import { allocateAddress, assignmentOf, ensureClusterNetwork, nodeOwner, reconcileContainer, sweepLeases } from './index.ts';

const GiB = 1024 ** 3;
function node(name: string): Node {
  return {
    apiVersion: 'ferry/v1', kind: 'Node', metadata: { name, uid: name, createdAt: '', labels: {} }, spec: { unschedulable: false },
    status: {
      address: 'http://x', capacity: { cpus: 2, memoryBytes: 4 * GiB }, agentVersion: 't', startedAt: '', heartbeatAt: '',
      facts: { hostname: '', kernel: '', arch: '', os: '', runc: '', criu: '', cgroupVersion: 1, overlay: true, cpuModel: '', cpuFlags: [] },
    },
  };
}
function container(name: string, memoryBytes?: number): Container {
  return {
    apiVersion: 'ferry/v1', kind: 'Container', metadata: { name, uid: `uid-${name}`, createdAt: '', generation: 1 },
    spec: { ...defaultSpec('sample'), resources: { memoryBytes } },
  };
}

describe('containers controller', () => {
  let store: Store;
  beforeEach(async () => { store = await openStore('memory:'); });
  afterEach(async () => { await store.close(); });

  it('waits with a reason while no node is ready, then places and assigns', async () => {
    await put(store, keys.container('web'), container('web'));
    await reconcileContainer(store, 'web');
    const pending = (await store.get<ContainerStatus>(keys.status('web')))!.value;
    assert.equal(pending.phase, 'pending');
    assert.match(pending.message!, /no nodes have registered/);

    await put(store, keys.node('n1'), node('n1'));
    await put(store, keys.nodeAlive('n1'), {});
    await reconcileContainer(store, 'web');
    const placed = (await store.get<Container>(keys.container('web')))!.value;
    assert.equal(placed.placement?.node, 'n1');
    assert.equal(placed.placement?.epoch, 1);
    await reconcileContainer(store, 'web');
    const a = (await store.get<Assignment>(keys.assignment('n1', 'web')))!.value;
    assert.deepEqual([a.uid, a.generation, a.epoch, a.spec.image], ['uid-web', 1, 1, 'sample']);
    assert.equal(placed.network, undefined, 'without a cluster network the node hands out addresses');
    assert.equal(a.network, undefined);
  });

  it('refuses a node without the memory asked for, naming why', async () => {
    await put(store, keys.node('n1'), node('n1'));
    await put(store, keys.nodeAlive('n1'), {});
    await put(store, keys.container('big'), container('big', 8 * GiB));
    await reconcileContainer(store, 'big');
    const st = (await store.get<ContainerStatus>(keys.status('big')))!.value;
    assert.match(st.message!, /n1: not enough memory/);
  });

  it('removal: asks the agent, then deletes once the agent cleared the status', async () => {
    await put(store, keys.node('n1'), node('n1'));
    await put(store, keys.nodeAlive('n1'), {});
    await put(store, keys.container('web'), container('web'));
    await reconcileContainer(store, 'web');
    await reconcileContainer(store, 'web');
    await put<ContainerStatus>(store, keys.status('web'), {
      name: 'web', uid: 'uid-web', node: 'n1', epoch: 1, runtimeId: 'r', phase: 'running', observedGeneration: 1, pid: 5, restartCount: 0, updatedAt: '',
    });
    const c = (await store.get<Container>(keys.container('web')))!.value;
    await put(store, keys.container('web'), { ...c, metadata: { ...c.metadata, deleting: true, generation: 2 } });
    await reconcileContainer(store, 'web');
    assert.equal((await store.get<Assignment>(keys.assignment('n1', 'web')))!.value.remove, 'graceful');
    assert.ok(await store.get(keys.container('web')), 'kept until the agent is done');
    await store.delete(keys.status('web'));
    await reconcileContainer(store, 'web');
    assert.equal(await store.get(keys.container('web')), undefined);
    assert.equal(await store.get(keys.assignment('n1', 'web')), undefined);
  });

  it('a removed container on a dead node is deleted at once; its assignment goes too', async () => {
    await put(store, keys.node('n1'), node('n1'));
    await put(store, keys.nodeAlive('n1'), {});
    await put(store, keys.container('web'), container('web'));
    await reconcileContainer(store, 'web');
    await reconcileContainer(store, 'web');
    await store.delete(keys.nodeAlive('n1'));
    const c = (await store.get<Container>(keys.container('web')))!.value;
    await put(store, keys.container('web'), { ...c, metadata: { ...c.metadata, deleting: true } });
    await reconcileContainer(store, 'web');
    assert.equal(await store.get(keys.container('web')), undefined);
    assert.equal(await store.get(keys.assignment('n1', 'web')), undefined);
  });

  describe('with a cluster network', () => {
    const NET = clusterNetworkOf('10.240.0.0/16', 42);
    beforeEach(async () => {
      await ensureClusterNetwork(store, NET);
      await put(store, keys.node('n1'), node('n1'));
      await put(store, keys.nodeAlive('n1'), {});
      // As registering does: the node's own address in the cluster network.
      assert.equal(await allocateAddress(store, NET, nodeOwner('n1')), '10.240.0.2');
    });
    const leases = async (): Promise<AddressLease[]> => (await store.list<AddressLease>(keys.addressLeases)).items.map((kv) => kv.value);

    it('placement leases an address and the assignment carries the interface', async () => {
      await put(store, keys.container('web'), container('web'));
      await put(store, keys.container('db'), container('db'));
      await reconcileContainer(store, 'web');
      await reconcileContainer(store, 'db');
      const web = (await store.get<Container>(keys.container('web')))!.value;
      assert.deepEqual(web.network, { ip: '10.240.0.3' });
      const a = (await store.get<Assignment>(keys.assignment('n1', 'web')))!.value;
      assert.deepEqual(a.network, {
        ip: '10.240.0.3', prefixLength: 16, gateway: '10.240.0.1', mac: '0a:58:0a:f0:00:03', name: 'default', vni: 42, subnet: '10.240.0.0/16', hostIp: '10.240.0.2',
      });
      assert.equal((await store.get<Assignment>(keys.assignment('n1', 'db')))!.value.network?.ip, '10.240.0.4');
      assert.deepEqual((await leases()).map((l) => [l.ip, l.owner]), [['10.240.0.2', 'node/n1'], ['10.240.0.3', 'container/uid-web'], ['10.240.0.4', 'container/uid-db']]);
      await reconcileContainer(store, 'web');
      assert.equal((await leases()).length, 3, 'a second pass leases nothing more');
    });

    it('a migrated container (new node, same uid) keeps its address', async () => {
      await put(store, keys.container('web'), container('web'));
      await reconcileContainer(store, 'web');
      const c = (await store.get<Container>(keys.container('web')))!.value;
      const moved: Container = { ...c, placement: { node: 'n2', epoch: 2, scheduledAt: '', reason: 'live-migrated' } };
      const before = (await store.get<Assignment>(keys.assignment('n1', 'web')))!.value;
      const after = await assignmentOf(store, moved, 2, 'n2');
      assert.deepEqual({ ...after.network, hostIp: '' }, { ...before.network, hostIp: '' }, 'same address, MAC and network');
      assert.equal(after.network?.hostIp, await allocateAddress(store, NET, nodeOwner('n2')), "the target node's own address");
      assert.notEqual(after.network?.hostIp, before.network?.hostIp);
      assert.equal(after.epoch, 2);
    });

    it('the address is released when the container is finally deleted', async () => {
      await put(store, keys.container('web'), container('web'));
      await reconcileContainer(store, 'web');
      await put<ContainerStatus>(store, keys.status('web'), {
        name: 'web', uid: 'uid-web', node: 'n1', epoch: 1, runtimeId: 'r', phase: 'running', observedGeneration: 1, pid: 5, restartCount: 0, updatedAt: '',
      });
      const c = (await store.get<Container>(keys.container('web')))!.value;
      await put(store, keys.container('web'), { ...c, metadata: { ...c.metadata, deleting: true } });
      await reconcileContainer(store, 'web');
      const removing = (await store.get<Assignment>(keys.assignment('n1', 'web')))!.value;
      assert.equal(removing.remove, 'graceful');
      assert.equal(removing.network?.ip, '10.240.0.3', 'the agent still knows which address to tear down');
      assert.equal((await leases()).length, 2, 'held while the agent cleans up');
      await store.delete(keys.status('web'));
      await reconcileContainer(store, 'web');
      assert.equal(await store.get(keys.container('web')), undefined);
      assert.deepEqual((await leases()).map((l) => l.owner), ['node/n1'], "only the node's own address is left");
    });

    it('an unplaced container that is removed leases nothing', async () => {
      await store.delete(keys.nodeAlive('n1'));
      await put(store, keys.container('web'), container('web'));
      await reconcileContainer(store, 'web');
      assert.deepEqual((await leases()).map((l) => l.owner), ['node/n1'], 'no address while no node can take it');
      const c = (await store.get<Container>(keys.container('web')))!.value;
      await put(store, keys.container('web'), { ...c, metadata: { ...c.metadata, deleting: true } });
      await reconcileContainer(store, 'web');
      assert.equal(await store.get(keys.container('web')), undefined);
      assert.deepEqual((await leases()).map((l) => l.owner), ['node/n1']);
    });

    describe('on a named network', () => {
      const blue: Network = {
        apiVersion: 'ferry/v1', kind: 'Network', metadata: { name: 'blue', uid: 'u-blue', createdAt: '', labels: {} }, spec: { subnet: '10.217.0.0/24', vni: 43 },
      };
      const onBlue = (name: string): Container => { const c = container(name); c.spec.network = 'blue'; return c; };

      it('leases from its subnet; the assignment names the network, its vni and subnet, and the host\'s address in it', async () => {
        await put(store, keys.network('blue'), blue);
        await put(store, keys.container('web'), onBlue('web'));
        await put(store, keys.container('api'), container('api'));
        await reconcileContainer(store, 'web');
        await reconcileContainer(store, 'api');
        assert.deepEqual((await store.get<Container>(keys.container('web')))!.value.network, { ip: '10.217.0.2' });
        const a = (await store.get<Assignment>(keys.assignment('n1', 'web')))!.value;
        assert.deepEqual(a.network, {
          ip: '10.217.0.2', prefixLength: 24, gateway: '10.217.0.1', mac: '0a:58:0a:d9:00:02', name: 'blue', vni: 43, subnet: '10.217.0.0/24', hostIp: '10.217.0.3',
        });
        assert.equal((await store.get<Assignment>(keys.assignment('n1', 'api')))!.value.network?.name, 'default', 'others stay on the cluster network');
        assert.deepEqual((await leases()).map((l) => [l.ip, l.owner]).sort(), [
          ['10.217.0.2', 'container/uid-web'], ['10.217.0.3', 'node/n1@blue'], ['10.240.0.2', 'node/n1'], ['10.240.0.3', 'container/uid-api'],
        ]);
        await reconcileContainer(store, 'web');
        assert.equal((await leases()).length, 4, 'the host address is leased once per node and network');
      });

      it('waits with a reason while its network does not exist, and is placed once it does', async () => {
        await put(store, keys.container('web'), onBlue('web'));
        await reconcileContainer(store, 'web');
        const st = (await store.get<ContainerStatus>(keys.status('web')))!.value;
        assert.equal(st.phase, 'pending');
        assert.match(st.message!, /network "blue" does not exist; create it with `ferry network create blue`/);
        assert.equal((await store.get<Container>(keys.container('web')))!.value.placement, undefined);
        await put(store, keys.network('blue'), blue);
        await reconcileContainer(store, 'web');
        assert.equal((await store.get<Assignment>(keys.assignment('n1', 'web')))!.value.network?.ip, '10.217.0.2');
      });

      it("a removed network's host addresses are swept", async () => {
        await put(store, keys.network('blue'), blue);
        await put(store, keys.container('web'), onBlue('web'));
        await reconcileContainer(store, 'web');
        await put(store, keys.container('web'), { ...(await store.get<Container>(keys.container('web')))!.value, metadata: { ...container('web').metadata, deleting: true } });
        await reconcileContainer(store, 'web');
        assert.deepEqual((await leases()).map((l) => l.owner).sort(), ['node/n1', 'node/n1@blue']);
        assert.deepEqual(await sweepLeases(store), [], 'kept while the network exists');
        await store.delete(keys.network('blue'));
        assert.deepEqual(await sweepLeases(store), ['10.217.0.3']);
        assert.deepEqual((await leases()).map((l) => l.owner), ['node/n1']);
      });
    });
  });
});
