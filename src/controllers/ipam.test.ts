import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { openStore, put, type Store } from '../store/index.ts';
import { clusterNetworkOf, defaultSpec, keys, macFromIp, parseCidr, planNetworkSpec, type AddressLease, type Container, type NetworkSpace } from '../model/index.ts';
import * as agentIpv4 from '../agent/network/ipv4.ts';
import { isFerryError } from '../errors/index.ts';
import { allocateAddress, containerOwner, ensureClusterNetwork, nodeOwner, releaseAddresses, sweepLeases } from './ipam.ts';

const NET = clusterNetworkOf('10.240.0.0/24', 42);

async function leases(store: Store): Promise<AddressLease[]> {
  return (await store.list<AddressLease>(keys.addressLeases)).items.map((kv) => kv.value);
}

function container(name: string, uid: string): Container {
  return { apiVersion: 'ferry/v1', kind: 'Container', metadata: { name, uid, createdAt: '', generation: 1 }, spec: defaultSpec('sample') };
}

describe('cluster network', () => {
  it('validates subnet and vni, and describes the stored network', () => {
    assert.deepEqual(clusterNetworkOf('10.240.0.0/16', 7), { subnet: '10.240.0.0/16', prefixLength: 16, gateway: '10.240.0.1', vni: 7 });
    for (const [subnet, vni] of [['10.0.0.0/7', 1], ['10.240.0.0/29', 1], ['10.240.0.1/24', 1], ['nope', 1], ['10.240.0.0/24', 0], ['10.240.0.0/24', 16_777_216], ['10.240.0.0/24', 1.5]] as const) {
      assert.throws(() => clusterNetworkOf(subnet, vni), (e) => isFerryError(e, 'NETWORK_BAD_CONFIG'), `${subnet} vni ${vni}`);
    }
  });

  it('computes addresses and MACs exactly as the agent\'s data plane does', () => {
    for (const ip of ['10.240.0.2', '0.0.0.1', '255.255.255.254', '192.168.17.200']) assert.equal(macFromIp(ip), agentIpv4.macFromIp(ip), ip);
    for (const cidr of ['10.240.0.0/16', '10.0.0.0/8', '192.168.4.16/28', '172.16.0.0/30']) {
      const [mine, theirs] = [parseCidr(cidr), agentIpv4.parseSubnet(cidr)];
      assert.deepEqual([mine.cidr, mine.gateway, mine.firstHost, mine.lastHost], [theirs.cidr, theirs.gateway, theirs.firstHost, theirs.lastHost], cidr);
    }
    for (const bad of ['10.240.0.1/16', '10.0.0.0/7', '10.0.0.0/31', '010.0.0.0/8', '10.0.0/8', '10.0.0.0/16/1', '256.0.0.0/8']) {
      assert.throws(() => parseCidr(bad), (e) => isFerryError(e, 'NETWORK_BAD_CIDR'), bad);
      assert.throws(() => agentIpv4.parseSubnet(bad), /bad network configuration/, bad);
    }
  });

  it('is stored once; a different subnet or vni later is refused with what to do', async () => {
    const store = await openStore('memory:');
    try {
      assert.deepEqual(await ensureClusterNetwork(store, NET), NET);
      assert.deepEqual(await ensureClusterNetwork(store, NET), NET, 'the same again is fine');
      for (const other of [clusterNetworkOf('10.241.0.0/24', 42), clusterNetworkOf('10.240.0.0/24', 43)]) {
        await assert.rejects(ensureClusterNetwork(store, other), (e) => {
          assert.ok(isFerryError(e, 'NETWORK_CONFLICT'));
          assert.match(e.message, /network is 10\.240\.0\.0\/24 \(vni 42\).*--cluster-subnet 10\.240\.0\.0\/24 --vni 42/);
          return true;
        });
      }
    } finally {
      await store.close();
    }
  });
});

describe('address management', () => {
  let store: Store;
  beforeEach(async () => { store = await openStore('memory:'); });
  afterEach(async () => { await store.close(); });

  it('20 concurrent owners get 20 distinct host addresses', async () => {
    const owners = Array.from({ length: 20 }, (_, i) => containerOwner(`u${i}`));
    const ips = await Promise.all(owners.map((o) => allocateAddress(store, NET, o)));
    assert.equal(new Set(ips).size, 20);
    for (const ip of ips) {
      assert.match(ip, /^10\.240\.0\.\d+$/);
      assert.ok(!['10.240.0.0', '10.240.0.1', '10.240.0.255'].includes(ip), `${ip} is not network, gateway or broadcast`);
    }
    const stored = await leases(store);
    assert.equal(stored.length, 20);
    assert.deepEqual(new Set(stored.map((l) => l.owner)), new Set(owners));
    assert.equal(ips[0], '10.240.0.2', 'the first host address after the gateway is handed out');
  });

  it('is idempotent per owner', async () => {
    const a = await allocateAddress(store, NET, 'node/n1');
    const b = await allocateAddress(store, NET, containerOwner('x'));
    assert.equal(await allocateAddress(store, NET, 'node/n1'), a);
    assert.equal(await allocateAddress(store, NET, containerOwner('x')), b);
    assert.notEqual(a, b);
    assert.equal((await leases(store)).length, 2);
  });

  it('concurrent calls for one owner converge on one lease and all return it', async () => {
    let creates = 0;
    const racing: Store = Object.create(store, { create: { value: (...a: Parameters<Store['create']>) => { creates++; return store.create(...a); } } });
    const ips = await Promise.all(Array.from({ length: 10 }, () => allocateAddress(racing, NET, containerOwner('same'))));
    assert.ok(creates > 1, `the callers raced (${creates} creates)`);
    assert.equal(new Set(ips).size, 1, `all callers got ${ips.join(', ')}`);
    const held = await leases(store);
    assert.deepEqual(held.map((l) => l.ip), [ips[0]]);
  });

  it('two leases of one owner (two racing creators) converge on the first created', async () => {
    const owner = containerOwner('dup');
    // As two racing callers leave it: the later create took a lower address.
    await store.create<AddressLease>(keys.addressLease('10.240.0.9'), { ip: '10.240.0.9', owner, createdAt: '' });
    await store.create<AddressLease>(keys.addressLease('10.240.0.3'), { ip: '10.240.0.3', owner, createdAt: '' });
    assert.equal(await allocateAddress(store, NET, owner), '10.240.0.9');
    assert.deepEqual((await leases(store)).map((l) => l.ip), ['10.240.0.9']);
  });

  it('an address freed by release is handed out again; release without leases is a no-op', async () => {
    const a = await allocateAddress(store, NET, containerOwner('a'));
    const b = await allocateAddress(store, NET, containerOwner('b'));
    assert.deepEqual(await releaseAddresses(store, containerOwner('a')), [a]);
    assert.deepEqual(await releaseAddresses(store, containerOwner('a')), []);
    assert.deepEqual((await leases(store)).map((l) => l.ip), [b]);
    assert.equal(await allocateAddress(store, NET, containerOwner('c')), a);
  });

  it('a full subnet is refused with a clear error; a /29 holds 5', async () => {
    // Below the /28 a manager accepts, but the allocator itself works on any subnet.
    const small = { subnet: '10.9.0.8/29', prefixLength: 29, gateway: '10.9.0.9', vni: 1 };
    const ips = await Promise.all(Array.from({ length: 5 }, (_, i) => allocateAddress(store, small, containerOwner(`s${i}`))));
    assert.deepEqual([...ips].sort(), ['10.9.0.10', '10.9.0.11', '10.9.0.12', '10.9.0.13', '10.9.0.14']);
    await assert.rejects(allocateAddress(store, small, containerOwner('one-too-many')), (e) => {
      assert.ok(isFerryError(e, 'NETWORK_FULL'));
      assert.equal(e.status, 503);
      assert.match(e.message, /the cluster network 10\.9\.0\.8\/29 is full: all 5 addresses are in use \(5 leases\)/);
      return true;
    });
    assert.equal(await allocateAddress(store, small, containerOwner('s0')), ips[0], 'an owner with a lease still gets it');
  });

  it('sweep frees the leases of containers that are gone, and only those', async () => {
    await put(store, keys.container('live'), container('live', 'uid-live'));
    const live = await allocateAddress(store, NET, containerOwner('uid-live'));
    const node = await allocateAddress(store, NET, 'node/n1');
    const gone = await allocateAddress(store, NET, containerOwner('uid-gone'));
    assert.deepEqual(await sweepLeases(store), [gone]);
    assert.deepEqual((await leases(store)).map((l) => l.ip).sort(), [live, node].sort());
    assert.deepEqual(await sweepLeases(store), []);
  });
});

describe('named networks', () => {
  const space = (o: Partial<NetworkSpace> = {}): NetworkSpace => ({ cluster: clusterNetworkOf('10.216.0.0/16', 4216), networks: [], nodeSubnets: [], underlayIps: [], ...o });

  it('picks the cluster vni + 1, + 2, … and the next free /24 of 10.217.0.0/16', () => {
    assert.deepEqual(planNetworkSpec({}, space()), { subnet: '10.217.0.0/24', vni: 4217 });
    const taken = space({
      networks: [{ name: 'a', subnet: '10.217.0.0/24', vni: 4217 }, { name: 'b', subnet: '10.217.2.0/23', vni: 4219 }],
      nodeSubnets: [{ node: 'n1', subnet: '10.217.1.0/25' }],
      underlayIps: [{ node: 'n2', ip: '10.217.4.9' }],
    });
    assert.deepEqual(planNetworkSpec({}, taken), { subnet: '10.217.5.0/24', vni: 4218 }, 'skips networks, node subnets and underlay addresses');
    assert.deepEqual(planNetworkSpec({}, space({ cluster: clusterNetworkOf('10.217.0.0/17', 16_777_215) })), { subnet: '10.217.128.0/24', vni: 1 }, 'skips the cluster subnet; the vni wraps');
    assert.deepEqual(planNetworkSpec({ subnet: '192.168.7.0/28', vni: 9 }, taken), { subnet: '192.168.7.0/28', vni: 9 }, 'given ones are kept');
  });

  it('refuses overlaps, taken vnis and bad values, saying with what', () => {
    const s = space({ networks: [{ name: 'a', subnet: '10.217.0.0/24', vni: 4217 }], nodeSubnets: [{ node: 'n1', subnet: '10.88.0.0/16' }] });
    const cases: [{ subnet?: string; vni?: number }, string, RegExp][] = [
      [{ subnet: '10.216.4.0/24' }, 'NETWORK_SUBNET_TAKEN', /10\.216\.4\.0\/24 overlaps the cluster network 10\.216\.0\.0\/16/],
      [{ subnet: '10.217.0.128/25' }, 'NETWORK_SUBNET_TAKEN', /overlaps network "a" \(10\.217\.0\.0\/24\)/],
      [{ subnet: '10.88.3.0/24' }, 'NETWORK_SUBNET_TAKEN', /local container subnet 10\.88\.0\.0\/16 of node "n1"/],
      [{ vni: 4216 }, 'NETWORK_VNI_TAKEN', /vni 4216 is already used by the cluster network/],
      [{ vni: 4217 }, 'NETWORK_VNI_TAKEN', /vni 4217 is already used by network "a"/],
      [{ vni: 16_777_216 }, 'NETWORK_BAD_SPEC', /not a VXLAN network id/],
      [{ subnet: '10.0.0.0/15' }, 'NETWORK_BAD_SPEC', /prefix \/15; use \/16 to \/28/],
      [{ subnet: '10.99.0.0/29' }, 'NETWORK_BAD_SPEC', /prefix \/29/],
      [{ subnet: '10.99.0.1/24' }, 'NETWORK_BAD_SPEC', /host bits are set/],
    ];
    for (const [want, code, msg] of cases) {
      assert.throws(() => planNetworkSpec(want, s), (e) => isFerryError(e, code) && msg.test(e.message), JSON.stringify(want));
    }
    const full = space({ networks: [{ name: 'big', subnet: '10.217.0.0/16', vni: 5 }] });
    assert.throws(() => planNetworkSpec({}, full), (e) => isFerryError(e, 'NETWORK_POOL_FULL') && /give one with --subnet/.test(e.message));
  });

  it('leases from each network\'s own subnet in one keyspace; a node has an address per network', async () => {
    const store = await openStore('memory:');
    try {
      const blue = { name: 'blue', subnet: '10.217.0.0/24', prefixLength: 24, gateway: '10.217.0.1', vni: 43 };
      assert.equal(nodeOwner('n1'), 'node/n1');
      assert.equal(nodeOwner('n1', 'default'), 'node/n1');
      assert.equal(nodeOwner('n1', 'blue'), 'node/n1@blue');
      assert.equal(await allocateAddress(store, NET, nodeOwner('n1')), '10.240.0.2');
      assert.equal(await allocateAddress(store, blue, nodeOwner('n1', 'blue')), '10.217.0.2');
      assert.equal(await allocateAddress(store, blue, containerOwner('c1')), '10.217.0.3');
      assert.equal(await allocateAddress(store, NET, containerOwner('c2')), '10.240.0.3');
      assert.equal(await allocateAddress(store, blue, nodeOwner('n1', 'blue')), '10.217.0.2', 'idempotent');
      // The network removed and made again with another subnet: the stale lease is replaced.
      const blue2 = { ...blue, subnet: '10.217.9.0/24', gateway: '10.217.9.1' };
      assert.equal(await allocateAddress(store, blue2, nodeOwner('n1', 'blue')), '10.217.9.2');
      assert.deepEqual((await leases(store)).filter((l) => l.owner === 'node/n1@blue').map((l) => l.ip), ['10.217.9.2']);
    } finally {
      await store.close();
    }
  });

  it('a full named network says which one', async () => {
    const store = await openStore('memory:');
    try {
      const tiny = { name: 'tiny', subnet: '10.217.0.0/30', prefixLength: 30, gateway: '10.217.0.1', vni: 44 };
      await allocateAddress(store, tiny, containerOwner('a'));
      await assert.rejects(allocateAddress(store, tiny, containerOwner('b')), (e) => isFerryError(e, 'NETWORK_FULL') && /network "tiny" 10\.217\.0\.0\/30 is full: all 1 addresses are in use \(1 leases\)/.test(e.message));
    } finally {
      await store.close();
    }
  });
});
