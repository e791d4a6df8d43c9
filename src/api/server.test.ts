import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { openStore, put, type Store } from '../store/index.ts';
import { keys, clusterNetworkOf, type Node, type NodeImages, type ImageRecord } from '../model/index.ts';
import { ensureClusterNetwork } from '../controllers/index.ts';
import { buildApi, NodeLeases } from './index.ts';

const TOKEN = 'test-token';
const auth = { authorization: `Bearer ${TOKEN}` };
const sample: ImageRecord = {
  id: 'sha256:' + 'ab'.repeat(32), tags: ['sample:latest'], size: 1000, created: '2026-01-01T00:00:00Z', architecture: 'amd64', os: 'linux', layers: [],
  config: { entrypoint: ['/app/sample-app'], cmd: [], env: [], workingDir: '/', user: '', exposedPorts: ['80/tcp'], labels: {} },
};

describe('manager API', () => {
  let store: Store;
  let app: FastifyInstance;
  before(async () => {
    store = await openStore('memory:');
    app = await buildApi({ store, token: TOKEN, agentToken: TOKEN, version: 'test', leases: new NodeLeases(store, 10), spoolDir: '/tmp', nodeLeaseTtl: 10 });
    await put<NodeImages>(store, keys.nodeImages('n1'), { node: 'n1', images: [sample], updatedAt: '' });
  });
  after(async () => { await app.close(); await store.close(); });

  const post = (body: unknown) => app.inject({ method: 'POST', url: '/v1/containers', headers: auth, payload: body as object });

  it('serves health and OpenAPI without a token', async () => {
    assert.equal((await app.inject('/healthz')).statusCode, 200);
    const spec = (await app.inject('/openapi.json')).json() as { openapi: string; paths: Record<string, unknown> };
    assert.match(spec.openapi, /^3\./);
    assert.ok(spec.paths['/v1/containers'], 'documents /v1/containers');
  });

  it('refuses requests without the right token', async () => {
    const r = await app.inject('/v1/containers');
    assert.equal(r.statusCode, 401);
    assert.equal(r.json().code, 'FERRY_ERR_UNAUTHORIZED');
    const w = await app.inject({ url: '/v1/containers', headers: { authorization: 'Bearer nope' } });
    assert.equal(w.statusCode, 401);
  });

  it('creates a container and refuses a duplicate name', async () => {
    const r = await post({ name: 'web', image: 'sample', ports: [{ hostIp: '0.0.0.0', hostPort: 8080, containerPort: 80, protocol: 'tcp' }] });
    assert.equal(r.statusCode, 201);
    assert.equal(r.json().container.spec.image, 'sample');
    const d = await post({ name: 'web', image: 'sample' });
    assert.equal(d.statusCode, 409);
    assert.equal(d.json().code, 'FERRY_ERR_CONTAINER_EXISTS');
  });

  it('answers bad input with stable codes and changes nothing', async () => {
    const rev = await store.revision();
    const cases: [unknown, number, string][] = [
      [{ name: 'x1', image: 'nosuch' }, 404, 'FERRY_ERR_IMAGE_NOT_FOUND'],
      [{ name: 'bad name!', image: 'sample' }, 400, 'FERRY_ERR_BAD_NAME'],
      [{ name: 'x2', image: 'sample', resources: { memoryBytes: 10 } }, 400, 'FERRY_ERR_BAD_REQUEST'],
      [{ name: 'x3', image: 'sample', ports: [{ hostIp: '0.0.0.0', hostPort: 8080, containerPort: 80, protocol: 'tcp' }] }, 409, 'FERRY_ERR_PORT_IN_USE'],
      [{ name: 'x4', image: 'sample', ports: [{ hostIp: '0.0.0.0', hostPort: 70000, containerPort: 80, protocol: 'tcp' }] }, 400, 'FERRY_ERR_BAD_REQUEST'],
      [{ name: 'x5', image: 'sample', bogus: 1 }, 400, 'FERRY_ERR_BAD_REQUEST'],
      [{ name: 'x6', image: 'sample', node: 'ghost' }, 404, 'FERRY_ERR_NODE_NOT_FOUND'],
    ];
    for (const [body, status, code] of cases) {
      const r = await post(body);
      assert.equal(r.statusCode, status, `${JSON.stringify(body)} → ${r.body}`);
      assert.equal(r.json().code, code);
      assert.ok(r.json().message.length > 10, 'a human message');
    }
    const garbage = await app.inject({ method: 'POST', url: '/v1/containers', headers: { ...auth, 'content-type': 'application/json' }, payload: '{"name": ' });
    assert.equal(garbage.statusCode, 400);
    assert.equal(await store.revision(), rev, 'nothing was written');
  });

  it('names the holder of a clashing port', async () => {
    const r = await post({ name: 'x7', image: 'sample', ports: [{ hostIp: '127.0.0.1', hostPort: 8080, containerPort: 81, protocol: 'tcp' }] });
    assert.match(r.json().message, /already published by container "web"/);
  });

  it('unknown routes and containers are 404 with codes', async () => {
    assert.equal((await app.inject({ url: '/v1/nope', headers: auth })).json().code, 'FERRY_ERR_ROUTE_NOT_FOUND');
    const r = await app.inject({ url: '/v1/containers/ghost', headers: auth });
    assert.equal(r.statusCode, 404);
    assert.equal(r.json().code, 'FERRY_ERR_CONTAINER_NOT_FOUND');
  });

  it('update needs something to change and bumps the generation', async () => {
    const none = await app.inject({ method: 'PATCH', url: '/v1/containers/web', headers: auth, payload: {} });
    assert.equal(none.statusCode, 400);
    const r = await app.inject({ method: 'PATCH', url: '/v1/containers/web', headers: auth, payload: { resources: { memoryBytes: 256 * 1024 * 1024 } } });
    assert.equal(r.statusCode, 200);
    assert.equal(r.json().container.metadata.generation, 2);
    assert.equal(r.json().container.spec.resources.memoryBytes, 256 * 1024 * 1024);
  });

  it('an oversized body is refused with 413', async () => {
    const r = await post({ name: 'big', image: 'sample', env: [`A=${'x'.repeat(2 * 1024 * 1024)}`] });
    assert.equal(r.statusCode, 413);
    assert.equal(r.json().code, 'FERRY_ERR_PAYLOAD_TOO_LARGE');
  });
});

describe('manager API: node networking', () => {
  const facts = { hostname: 'h', kernel: 'k', arch: 'amd64', os: 'linux', runc: '1', criu: '4', cgroupVersion: 2, overlay: true, cpuModel: 'c', cpuFlags: [] };
  const registration = (name: string, network?: { underlayIp?: string; subnet?: string }) => ({
    name, address: `http://${name}:7001`, labels: {}, capacity: { cpus: 2, memoryBytes: 1024 ** 3 }, facts, agentVersion: 't', ...(network ? { network } : {}),
  });
  const open = async (): Promise<{ store: Store; app: FastifyInstance; close: () => Promise<void> }> => {
    const store = await openStore('memory:');
    const app = await buildApi({ store, token: TOKEN, agentToken: TOKEN, version: 'test', leases: new NodeLeases(store, 10), spoolDir: '/tmp', nodeLeaseTtl: 10 });
    return { store, app, close: async () => { await app.close(); await store.close(); } };
  };
  const register = (app: FastifyInstance, body: object) => app.inject({ method: 'POST', url: '/v1/agent/register', headers: auth, payload: body });

  describe('without a cluster network', () => {
    let t: Awaited<ReturnType<typeof open>>;
    before(async () => { t = await open(); });
    after(async () => { await t.close(); });

    it('GET /v1/network is 404 and says how to have one', async () => {
      const r = await t.app.inject({ url: '/v1/network', headers: auth });
      assert.equal(r.statusCode, 404);
      assert.equal(r.json().code, 'FERRY_ERR_NETWORK_NOT_CONFIGURED');
      assert.match(r.json().message, /--cluster-subnet/);
    });

    it('stores each node\'s local subnet and refuses one that overlaps another node\'s', async () => {
      const ok = await register(t.app, registration('n1', { subnet: '10.213.1.0/24' }));
      assert.equal(ok.statusCode, 200, ok.body);
      assert.equal(ok.json().network, undefined);
      assert.deepEqual(ok.json().node.status.network, { subnet: '10.213.1.0/24' });
      const again = await register(t.app, registration('n1', { subnet: '10.213.1.0/24' }));
      assert.equal(again.statusCode, 200, 'a node re-registering with its own subnet is fine');
      const rev = await t.store.revision();
      const clash = await register(t.app, registration('n2', { subnet: '10.213.1.128/25' }));
      assert.equal(clash.statusCode, 409);
      assert.equal(clash.json().code, 'FERRY_ERR_NETWORK_SUBNET_OVERLAP');
      assert.match(clash.json().message, /node "n2" uses the local container subnet 10\.213\.1\.128\/25, which overlaps the subnet 10\.213\.1\.0\/24 of node "n1"/);
      assert.equal(await t.store.revision(), rev, 'a refused registration writes nothing');
      const bad = await register(t.app, registration('n2', { subnet: '10.213.1.7/24' }));
      assert.equal(bad.statusCode, 400);
      assert.match(bad.json().message, /network\.subnet/);
      assert.equal((await register(t.app, registration('n2', { subnet: '10.213.2.0/24' }))).statusCode, 200);
      assert.equal((await register(t.app, registration('old'))).statusCode, 200, 'an agent that sends no network still registers');
      assert.equal((await t.store.get<Node>(keys.node('old')))!.value.status.network, undefined);
    });
  });

  describe('with a cluster network', () => {
    let t: Awaited<ReturnType<typeof open>>;
    const NET = clusterNetworkOf('10.240.0.0/16', 42);
    before(async () => { t = await open(); await ensureClusterNetwork(t.store, NET); });
    after(async () => { await t.close(); });

    it('GET /v1/network answers the stored network', async () => {
      const r = await t.app.inject({ url: '/v1/network', headers: auth });
      assert.equal(r.statusCode, 200);
      assert.deepEqual(r.json(), { subnet: '10.240.0.0/16', prefixLength: 16, gateway: '10.240.0.1', vni: 42 });
    });

    it('refuses a node without an underlay IP, with one inside the cluster subnet, or with an overlapping local subnet', async () => {
      const rev = await t.store.revision();
      const cases: [object, number, string, RegExp][] = [
        [registration('n1'), 409, 'FERRY_ERR_NETWORK_UNDERLAY_MISSING', /node "n1" registered without an underlay IP.*10\.240\.0\.0\/16 \(vni 42\)/],
        [registration('n1', { subnet: '10.213.1.0/24' }), 409, 'FERRY_ERR_NETWORK_UNDERLAY_MISSING', /without an underlay IP/],
        [registration('n1', { underlayIp: '10.240.7.9' }), 409, 'FERRY_ERR_NETWORK_UNDERLAY_INSIDE', /underlay IP 10\.240\.7\.9, which lies inside the cluster container network 10\.240\.0\.0\/16/],
        [registration('n1', { underlayIp: '192.168.1.10', subnet: '10.240.128.0/24' }), 409, 'FERRY_ERR_NETWORK_SUBNET_OVERLAP', /overlaps the cluster network 10\.240\.0\.0\/16/],
        [registration('n1', { underlayIp: 'host-a' }), 400, 'FERRY_ERR_BAD_REQUEST', /not an IPv4 address/],
        [registration('n1', { underlayIp: '192.168.1.10', bogus: 1 } as object), 400, 'FERRY_ERR_BAD_REQUEST', /./],
      ];
      for (const [body, status, code, message] of cases) {
        const r = await register(t.app, body);
        assert.equal(r.statusCode, status, `${JSON.stringify((body as { network?: unknown }).network)} → ${r.body}`);
        assert.equal(r.json().code, code);
        assert.match(r.json().message, message);
      }
      assert.equal(await t.store.revision(), rev, 'nothing was written, no address leased');
    });

    it('answers the network with the node\'s own address, stable across re-registers', async () => {
      const r = await register(t.app, registration('n1', { underlayIp: '192.168.1.10' }));
      assert.equal(r.statusCode, 200, r.body);
      const expected = { subnet: '10.240.0.0/16', prefixLength: 16, gateway: '10.240.0.1', vni: 42, hostIp: '10.240.0.2' };
      assert.deepEqual(r.json().network, expected);
      assert.deepEqual(r.json().node.status.network, { underlayIp: '192.168.1.10', hostIp: '10.240.0.2' });
      const again = await register(t.app, registration('n1', { underlayIp: '192.168.1.10' }));
      assert.deepEqual(again.json().network, expected);
      const n2 = await register(t.app, registration('n2', { underlayIp: '192.168.1.11' }));
      assert.equal(n2.json().network.hostIp, '10.240.0.3');
      assert.deepEqual((await t.store.get<Node>(keys.node('n2')))!.value.status.network, { underlayIp: '192.168.1.11', hostIp: '10.240.0.3' });
      const owners = (await t.store.list<{ owner: string }>(keys.addressLeases)).items.map((kv) => kv.value.owner);
      assert.deepEqual(owners, ['node/n1', 'node/n2']);
    });
  });
});
