import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { openStore, put, type Store } from '../store/index.ts';
import { keys, clusterNetworkOf, type AddressLease, type Node, type NodeImages, type ImageRecord } from '../model/index.ts';
import { allocateAddress, ensureClusterNetwork, nodeOwner } from '../controllers/index.ts';
import { buildApi, NodeLeases } from './index.ts';
import { createJoinToken } from './join.ts';

const TOKEN = 'test-token';
const auth = { authorization: `Bearer ${TOKEN}` };
const sample: ImageRecord = {
  id: 'sha256:' + 'ab'.repeat(32), tags: ['sample:latest'], size: 1000, created: '2026-01-01T00:00:00Z', architecture: 'amd64', os: 'linux', layers: [],
  config: { entrypoint: ['/app/sample-app'], cmd: [], env: [], workingDir: '/', user: '', exposedPorts: ['80/tcp'], labels: {} },
};

/** A manager API over a fresh memory store. */
async function openApi(): Promise<{ store: Store; app: FastifyInstance; close: () => Promise<void> }> {
  const store = await openStore('memory:');
  const app = await buildApi({ store, token: TOKEN, agentToken: TOKEN, version: 'test', leases: new NodeLeases(store, 10), spoolDir: '/tmp', nodeLeaseTtl: 10 });
  return { store, app, close: async () => { await app.close(); await store.close(); } };
}

/** Registers before/after hooks around an API with the sample image reported by node n1. */
function useApi(set: (x: { store: Store; app: FastifyInstance }) => void): void {
  let close = async (): Promise<void> => undefined;
  before(async () => {
    const x = await openApi();
    close = x.close;
    set(x);
    await put<NodeImages>(x.store, keys.nodeImages('n1'), { node: 'n1', images: [sample], updatedAt: '' });
  });
  after(() => close());
}

describe('manager API', () => {
  let store: Store;
  let app: FastifyInstance;
  useApi((x) => ({ store, app } = x));

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
  const open = openApi;
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

  describe('removing a node that is gone', () => {
    let t: Awaited<ReturnType<typeof open>>;
    before(async () => { t = await open(); await ensureClusterNetwork(t.store, clusterNetworkOf('10.240.0.0/16', 42)); });
    after(async () => { await t.close(); });
    const del = (name: string) => t.app.inject({ method: 'DELETE', url: `/v1/nodes/${name}`, headers: auth });

    it('refuses a Ready node or one with containers placed on it, then forgets the node, its addresses and its images', async () => {
      assert.equal((await register(t.app, registration('n1', { underlayIp: '10.215.0.11' }))).statusCode, 200);
      await put<NodeImages>(t.store, keys.nodeImages('n1'), { node: 'n1', images: [sample], updatedAt: '' });
      const ready = await del('n1');
      assert.equal(ready.statusCode, 409);
      assert.match(ready.json().message, /node "n1" is Ready: its agent still runs/);
      await t.store.delete(keys.nodeAlive('n1'));
      const c = { apiVersion: 'ferry/v1', kind: 'Container', metadata: { name: 'web', uid: 'u1', createdAt: '', generation: 1 }, spec: {}, placement: { node: 'n1', epoch: 1, scheduledAt: '', reason: '' } };
      await put(t.store, keys.container('web'), c);
      const used = await del('n1');
      assert.equal(used.statusCode, 409);
      assert.match(used.json().message, /node "n1" still has 1 container\(s\) placed on it: web/);
      await t.store.delete(keys.container('web'));
      assert.equal((await del('n1')).statusCode, 204);
      assert.equal((await t.app.inject({ url: '/v1/nodes/n1', headers: auth })).statusCode, 404);
      const leases = (await t.store.list<AddressLease>(keys.addressLeases)).items.filter((kv) => kv.value.owner.startsWith('node/n1'));
      assert.deepEqual(leases, [], 'its overlay address is free again');
      assert.equal(await t.store.get(keys.nodeImages('n1')), undefined);
      const unknown = await del('ghost');
      assert.equal(unknown.statusCode, 404);
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

describe('manager API: joining with tokens', () => {
  const facts = { hostname: 'h', kernel: 'k', arch: 'amd64', os: 'linux', runc: '1', criu: '4', cgroupVersion: 2, overlay: true, cpuModel: 'c', cpuFlags: [] };
  const registration = (name: string, labels: Record<string, string> = {}) => ({
    name, address: `http://${name}:7001`, labels, capacity: { cpus: 2, memoryBytes: 1024 ** 3 }, facts, agentVersion: 't',
  });
  const status = (name: string, node: string) => ({ name, uid: 'u1', node, epoch: 1, runtimeId: 'r1', phase: 'running', observedGeneration: 1, pid: 1, restartCount: 0, updatedAt: '2026-01-01T00:00:00Z' });
  let store: Store;
  let app: FastifyInstance;
  before(async () => {
    ({ store, app } = await openApi());
  });
  after(async () => { await app.close(); await store.close(); });

  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
  const create = async (body: object = {}): Promise<{ token: string; id: string; expiresAt: string; uses: number }> => {
    const r = await app.inject({ method: 'POST', url: '/v1/join-tokens', headers: auth, payload: body });
    assert.equal(r.statusCode, 201, r.body);
    return r.json();
  };
  const join = (name: string, token: string) => app.inject({ method: 'POST', url: '/v1/agent/join', payload: { name, token } });
  const joined = async (name: string, token: string): Promise<string> => {
    const r = await join(name, token);
    assert.equal(r.statusCode, 200, r.body);
    assert.equal(r.json().node, name);
    return r.json().credential as string;
  };

  it('makes a token shown once: the store and the listing hold no secret', async () => {
    const t0 = Date.now();
    const t = await create();
    assert.match(t.token, /^fjt\.[0-9a-f]{16}\.[A-Za-z0-9_-]{32}$/);
    assert.equal(t.token.split('.')[1], t.id);
    assert.equal(t.uses, 1, 'one use by default');
    const ttl = Date.parse(t.expiresAt) - t0;
    assert.ok(ttl > 3590_000 && ttl <= 3601_000, `an hour by default, not ${ttl} ms`);
    const secret = t.token.split('.')[2]!;
    const stored = JSON.stringify((await store.list(keys.joinTokens)).items);
    assert.ok(!stored.includes(secret), 'the store holds only a hash');
    const ls = await app.inject({ url: '/v1/join-tokens', headers: auth });
    assert.equal(ls.statusCode, 200);
    assert.ok(!ls.body.includes(secret) && !ls.body.includes('secretHash'), ls.body);
    assert.deepEqual(ls.json().map((v: { id: string }) => v.id), [t.id]);
    assert.equal(ls.json()[0].usesLeft, 1);
  });

  it('refuses bad token requests and callers without the cluster token', async () => {
    for (const body of [{ ttlSeconds: 0 }, { uses: 0 }, { uses: 1.5 }, { bogus: 1 }]) {
      const r = await app.inject({ method: 'POST', url: '/v1/join-tokens', headers: auth, payload: body });
      assert.equal(r.statusCode, 400, JSON.stringify(body));
    }
    assert.equal((await app.inject({ method: 'POST', url: '/v1/join-tokens', payload: {} })).statusCode, 401);
    assert.equal((await app.inject({ url: '/v1/join-tokens' })).statusCode, 401);
  });

  it('a joined node\'s credential makes its agent calls, for its own node only', async () => {
    const cred = await joined('n1', (await create()).token);
    assert.match(cred, /^fac\.n1\.[A-Za-z0-9_-]{43}$/);
    assert.ok(!JSON.stringify((await store.list(keys.nodeCredentials)).items).includes(cred.split('.')[2]!), 'only a hash is stored');
    const h = bearer(cred);
    const allowed: [string, string, object | undefined, number][] = [
      ['POST', '/v1/agent/register', registration('n1'), 200],
      ['POST', '/v1/agent/n1/heartbeat', undefined, 200],
      ['PUT', '/v1/agent/n1/images', { images: [sample] }, 204],
      ['PUT', '/v1/agent/status/c1', status('c1', 'n1'), 204],
      ['DELETE', '/v1/agent/status/c1?uid=u1&node=n1', undefined, 204],
      ['GET', `/v1/kv?prefix=${keys.assignments('n1')}`, undefined, 200],
      ['GET', '/v1/nodes', undefined, 200],
      ['GET', '/v1/migrations/m-ghost', undefined, 404],
    ];
    for (const [method, url, payload, code] of allowed) {
      const r = await app.inject({ method: method as 'GET', url, headers: h, ...(payload ? { payload } : {}) });
      assert.equal(r.statusCode, code, `${method} ${url} → ${r.body}`);
    }
    const refused: [string, string, object | undefined, RegExp][] = [
      ['GET', '/v1/containers', undefined, /cannot call GET \/v1\/containers/],
      ['POST', '/v1/containers', { image: 'sample' }, /cannot call POST \/v1\/containers/],
      ['POST', '/v1/join-tokens', {}, /cannot call POST \/v1\/join-tokens/],
      ['GET', '/v1/join-tokens', undefined, /cannot call GET/],
      ['POST', '/v1/nodes/n1/cordon', undefined, /cannot call/],
      ['POST', '/v1/agent/register', registration('n2'), /cannot act for node "n2"/],
      ['POST', '/v1/agent/n2/heartbeat', undefined, /cannot act for node "n2"/],
      ['PUT', '/v1/agent/n2/images', { images: [] }, /cannot act for node "n2"/],
      ['PUT', '/v1/agent/status/c1', status('c1', 'n2'), /cannot act for node "n2"/],
      ['DELETE', '/v1/agent/status/c1?uid=u1&node=n2', undefined, /cannot act for node "n2"/],
      ['GET', `/v1/kv?prefix=${keys.containers}`, undefined, /cannot read \/ferry\/containers\/ \(only its own assignments/],
      ['GET', '/v1/kv?prefix=/ferry/assignments/n10/', undefined, /cannot read/],
      ['GET', `/v1/kv?prefix=${keys.joinTokens}`, undefined, /cannot read/],
      ['GET', `/v1/watch?prefix=${keys.nodeCredentials}`, undefined, /cannot read/],
    ];
    const rev = await store.revision();
    for (const [method, url, payload, message] of refused) {
      const r = await app.inject({ method: method as 'GET', url, headers: h, ...(payload ? { payload } : {}) });
      assert.equal(r.statusCode, 403, `${method} ${url} → ${r.body}`);
      assert.equal(r.json().code, 'FERRY_ERR_NODE_CREDENTIAL_FORBIDDEN');
      assert.match(r.json().message, message);
      assert.match(r.json().message, /other calls need the cluster token/);
    }
    assert.equal(await store.revision(), rev, 'a refused call writes nothing');
    const wrong = await app.inject({ url: '/v1/nodes', headers: bearer(`fac.n1.${'x'.repeat(43)}`) });
    assert.equal(wrong.statusCode, 401);
    assert.match(wrong.json().message, /node credential is not \(or no longer\) valid; join the node again/);
  });

  it('refuses a join token used as an API token, with what to do instead', async () => {
    const t = await create();
    const r = await app.inject({ url: '/v1/nodes', headers: bearer(t.token) });
    assert.equal(r.statusCode, 401);
    assert.match(r.json().message, /that is a join token: .*ferry agent --join/);
  });

  it('a wrong, unknown or malformed token is "not valid", the same whether or not the id exists', async () => {
    const t = await create();
    const wrongSecret = `fjt.${t.id}.${'A'.repeat(32)}`;
    const unknownId = `fjt.${'0'.repeat(16)}.${t.token.split('.')[2]}`;
    const rev = await store.revision();
    const answers = [];
    for (const token of [wrongSecret, unknownId]) {
      const r = await join('n5', token);
      assert.equal(r.statusCode, 401, r.body);
      assert.equal(r.json().code, 'FERRY_ERR_JOIN_TOKEN_INVALID');
      answers.push(r.body);
    }
    assert.equal(answers[0], answers[1], 'nothing tells an existing id from an unknown one');
    assert.match(JSON.parse(answers[0]!).message, /not valid for this cluster.*ask an admin for a new one with `ferry node token create`/);
    const bad = await join('n5', 'hunter2');
    assert.equal(bad.statusCode, 401);
    assert.match(bad.json().message, /not a join token: those look like fjt\.<id>\.<secret>/);
    assert.equal((await join('bad name!', t.token)).json().code, 'FERRY_ERR_BAD_NAME');
    assert.equal(await store.revision(), rev, 'a refused join writes nothing');
  });

  it('an expired or used-up token says so, to its holder', async () => {
    const old = await createJoinToken(store, {}, Date.now() - 2 * 3600_000);
    const r = await join('n6', old.token);
    assert.equal(r.statusCode, 403);
    assert.equal(r.json().code, 'FERRY_ERR_JOIN_TOKEN_EXPIRED');
    assert.match(r.json().message, new RegExp(`join token ${old.id} expired at ${old.expiresAt}; ask an admin for a new one with \`ferry node token create\``));
    const two = await create({ uses: 2, ttlSeconds: 60 });
    await joined('n6', two.token);
    await joined('n7', two.token);
    const used = await join('n8', two.token);
    assert.equal(used.statusCode, 403);
    assert.equal(used.json().code, 'FERRY_ERR_JOIN_TOKEN_USED_UP');
    assert.match(used.json().message, /is used up \(it allowed 2 join\(s\)\); ask an admin/);
    const v = ((await app.inject({ url: '/v1/join-tokens', headers: auth })).json() as { id: string; usesLeft: number; joined: string[]; expired: boolean }[]);
    assert.deepEqual(v.find((x) => x.id === two.id), { ...v.find((x) => x.id === two.id), usesLeft: 0, joined: ['n6', 'n7'], expired: false });
    assert.equal(v.find((x) => x.id === old.id)?.expired, true);
  });

  it('concurrent joins on the last use: exactly one wins', async () => {
    const t = await create();
    const names = ['r1', 'r2', 'r3', 'r4', 'r5', 'r6'];
    const rs = await Promise.all(names.map((n) => join(n, t.token)));
    assert.deepEqual(rs.map((r) => r.statusCode).sort(), [200, 403, 403, 403, 403, 403]);
    for (const r of rs.filter((x) => x.statusCode === 403)) assert.equal(r.json().code, 'FERRY_ERR_JOIN_TOKEN_USED_UP');
    const winner = names[rs.findIndex((r) => r.statusCode === 200)]!;
    assert.deepEqual((await store.list(keys.nodeCredentials)).items.map((kv) => kv.key).filter((k) => names.some((n) => k.endsWith(`/${n}`))), [keys.nodeCredential(winner)]);
    assert.deepEqual((await store.get<{ status: unknown }>(keys.joinToken(t.id)))!.value.status, { usesLeft: 0, joined: [winner] });
  });

  it('a live node\'s name cannot be taken; once it is gone, a rejoin replaces its credential', async () => {
    const first = await joined('n9', (await create()).token);
    assert.equal((await app.inject({ method: 'POST', url: '/v1/agent/register', headers: bearer(first), payload: registration('n9') })).statusCode, 200);
    const t = await create();
    const r = await join('n9', t.token);
    assert.equal(r.statusCode, 409);
    assert.equal(r.json().code, 'FERRY_ERR_NODE_NAME_TAKEN');
    assert.match(r.json().message, /node name "n9" belongs to a live node; give this host another name \(--name\)/);
    assert.equal((await store.get<{ status: { usesLeft: number } }>(keys.joinToken(t.id)))!.value.status.usesLeft, 1, 'the refused join used nothing');
    await store.delete(keys.nodeAlive('n9'));
    const second = await joined('n9', t.token);
    assert.equal((await app.inject({ url: '/v1/nodes', headers: bearer(first) })).statusCode, 401, 'the old credential is void');
    assert.equal((await app.inject({ url: '/v1/nodes', headers: bearer(second) })).statusCode, 200);
  });

  it('the token\'s labels are the node\'s, over the agent\'s own', async () => {
    const t = await create({ labels: { zone: 'a', tier: 'gold' } });
    assert.deepEqual((t as { labels?: unknown }).labels, { zone: 'a', tier: 'gold' });
    const cred = await joined('n10', t.token);
    const r = await app.inject({ method: 'POST', url: '/v1/agent/register', headers: bearer(cred), payload: registration('n10', { zone: 'b', disk: 'ssd' }) });
    assert.equal(r.statusCode, 200, r.body);
    assert.deepEqual((await store.get<Node>(keys.node('n10')))!.value.metadata.labels, { zone: 'a', tier: 'gold', disk: 'ssd' });
  });

  it('removes a token: it no longer admits anyone; removing it again is 404', async () => {
    const t = await create({ uses: 3 });
    const rm = await app.inject({ method: 'DELETE', url: `/v1/join-tokens/${t.id}`, headers: auth });
    assert.equal(rm.statusCode, 204);
    assert.equal((await join('n11', t.token)).json().code, 'FERRY_ERR_JOIN_TOKEN_INVALID');
    const again = await app.inject({ method: 'DELETE', url: `/v1/join-tokens/${t.id}`, headers: auth });
    assert.equal(again.statusCode, 404);
    assert.match(again.json().message, /no join token ".*"; `ferry node token ls` lists them/);
  });

  it('the cluster token still makes every agent call, and the join route is documented', async () => {
    assert.equal((await app.inject({ method: 'POST', url: '/v1/agent/register', headers: auth, payload: registration('n12') })).statusCode, 200);
    assert.equal((await app.inject({ method: 'POST', url: '/v1/agent/n12/heartbeat', headers: auth })).statusCode, 200);
    assert.equal((await app.inject({ url: `/v1/kv?prefix=${keys.containers}`, headers: auth })).statusCode, 200);
    const spec = (await app.inject('/openapi.json')).json() as { paths: Record<string, unknown> };
    assert.ok(spec.paths['/v1/agent/join'] && spec.paths['/v1/join-tokens']);
  });
});

describe('manager API: named networks', () => {
  let store: Store;
  let app: FastifyInstance;
  useApi((x) => ({ store, app } = x));
  const call = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: object) => app.inject({ method, url, headers: auth, ...(payload ? { payload } : {}) });

  it('without a cluster network, networks and --network are refused, saying what to do', async () => {
    for (const [r, status, code] of [
      [await call('POST', '/v1/networks', { name: 'blue' }), 409, 'FERRY_ERR_NETWORKS_NEED_CLUSTER'],
      [await call('POST', '/v1/containers', { name: 'c0', image: 'sample', network: 'blue' }), 409, 'FERRY_ERR_NETWORKS_NEED_CLUSTER'],
      [await call('GET', '/v1/networks'), 404, 'FERRY_ERR_NETWORK_NOT_CONFIGURED'],
    ] as const) {
      assert.equal(r.statusCode, status, r.body);
      assert.equal(r.json().code, code);
      assert.match(r.json().message, /--cluster-subnet/);
    }
    assert.deepEqual((await store.list(keys.containers)).items, []);
  });

  it('creates networks with a free subnet and vni, or the ones given, and refuses clashes', async () => {
    await ensureClusterNetwork(store, clusterNetworkOf('10.240.0.0/16', 42));
    const blue = await call('POST', '/v1/networks', { name: 'blue', labels: { env: 'prod' } });
    assert.equal(blue.statusCode, 201, blue.body);
    assert.deepEqual(blue.json(), {
      name: 'blue', subnet: '10.217.0.0/24', prefixLength: 24, gateway: '10.217.0.1', vni: 43, default: false, labels: { env: 'prod' }, createdAt: blue.json().createdAt, containers: [],
    });
    const red = await call('POST', '/v1/networks', { name: 'red', subnet: '10.50.0.0/16', vni: 7 });
    assert.equal(red.statusCode, 201, red.body);
    assert.deepEqual([red.json().subnet, red.json().vni], ['10.50.0.0/16', 7]);
    assert.equal((await call('POST', '/v1/networks', { name: 'green' })).json().vni, 44);
    const rev = await store.revision();
    for (const [body, status, code] of [
      [{ name: 'blue' }, 409, 'FERRY_ERR_NETWORK_EXISTS'],
      [{ name: 'default' }, 409, 'FERRY_ERR_NETWORK_DEFAULT'],
      [{ name: 'x1', subnet: '10.240.7.0/24' }, 409, 'FERRY_ERR_NETWORK_SUBNET_TAKEN'],
      [{ name: 'x2', subnet: '10.50.3.0/24' }, 409, 'FERRY_ERR_NETWORK_SUBNET_TAKEN'],
      [{ name: 'x3', vni: 42 }, 409, 'FERRY_ERR_NETWORK_VNI_TAKEN'],
      [{ name: 'x4', vni: 7 }, 409, 'FERRY_ERR_NETWORK_VNI_TAKEN'],
      [{ name: 'x5', subnet: '10.60.0.0/8' }, 400, 'FERRY_ERR_NETWORK_BAD_SPEC'],
      [{ name: 'bad name!' }, 400, 'FERRY_ERR_BAD_NAME'],
      [{ name: 'x6', bogus: 1 }, 400, 'FERRY_ERR_BAD_REQUEST'],
    ] as const) {
      const r = await call('POST', '/v1/networks', body);
      assert.equal(r.statusCode, status, `${JSON.stringify(body)} → ${r.body}`);
      assert.equal(r.json().code, code);
    }
    assert.equal(await store.revision(), rev, 'a refused create writes nothing');
  });

  it('racing creates never share a subnet or a vni', async () => {
    const rs = await Promise.all(['r1', 'r2', 'r3', 'r4'].map((name) => call('POST', '/v1/networks', { name })));
    assert.deepEqual(rs.map((r) => r.statusCode), [201, 201, 201, 201]);
    const nets = (await call('GET', '/v1/networks')).json() as { subnet: string; vni: number }[];
    assert.equal(new Set(nets.map((n) => n.subnet)).size, nets.length);
    assert.equal(new Set(nets.map((n) => n.vni)).size, nets.length);
    for (const name of ['r1', 'r2', 'r3', 'r4']) assert.equal((await call('DELETE', `/v1/networks/${name}`)).statusCode, 204);
  });

  it('puts containers on a network; an unknown one is 404 with how to make it; the network is fixed', async () => {
    const missing = await call('POST', '/v1/containers', { name: 'c1', image: 'sample', network: 'nosuch' });
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.json().code, 'FERRY_ERR_NETWORK_NOT_FOUND');
    assert.match(missing.json().message, /network "nosuch" does not exist; create it with `ferry network create nosuch`/);
    const on = await call('POST', '/v1/containers', { name: 'c1', image: 'sample', network: 'blue' });
    assert.equal(on.statusCode, 201, on.body);
    assert.equal(on.json().container.spec.network, 'blue');
    const dflt = await call('POST', '/v1/containers', { name: 'c2', image: 'sample', network: 'default' });
    assert.equal(dflt.json().container.spec.network, undefined, '`default` is stored as no network');
    const fixed = await call('PATCH', '/v1/containers/c1', { network: 'red' });
    assert.equal(fixed.statusCode, 409);
    assert.equal(fixed.json().code, 'FERRY_ERR_CONTAINER_FIELD_FIXED');
  });

  it('lists default first, then the named ones, with their containers', async () => {
    const list = (await call('GET', '/v1/networks')).json() as { name: string; default: boolean; subnet: string; vni: number; containers: string[] }[];
    assert.deepEqual(list.map((n) => [n.name, n.default, n.subnet, n.vni, n.containers]), [
      ['default', true, '10.240.0.0/16', 42, ['c2']], ['blue', false, '10.217.0.0/24', 43, ['c1']],
      ['green', false, '10.217.1.0/24', 44, []], ['red', false, '10.50.0.0/16', 7, []],
    ]);
    assert.deepEqual((await call('GET', '/v1/networks/blue')).json().containers, ['c1']);
    assert.equal((await call('GET', '/v1/networks/default')).json().default, true);
    assert.equal((await call('GET', '/v1/networks/nosuch')).json().code, 'FERRY_ERR_NETWORK_NOT_FOUND');
  });

  it('removal is refused while containers are on it; then it frees the hosts\' addresses in it', async () => {
    await allocateAddress(store, { name: 'blue', subnet: '10.217.0.0/24', prefixLength: 24, gateway: '10.217.0.1', vni: 43 }, nodeOwner('n1', 'blue'));
    const busy = await call('DELETE', '/v1/networks/blue');
    assert.equal(busy.statusCode, 409);
    assert.equal(busy.json().code, 'FERRY_ERR_NETWORK_IN_USE');
    assert.match(busy.json().message, /still used by 1 container\(s\): c1; remove them first \(`ferry rm c1`\)/);
    assert.equal((await call('DELETE', '/v1/networks/default')).json().code, 'FERRY_ERR_NETWORK_DEFAULT');
    await store.delete(keys.container('c1'));
    assert.equal((await call('DELETE', '/v1/networks/blue')).statusCode, 204);
    assert.deepEqual((await store.list<AddressLease>(keys.addressLeases)).items.filter((kv) => kv.value.owner.endsWith('@blue')), [], 'node/n1@blue is released');
    assert.equal((await call('DELETE', '/v1/networks/blue')).statusCode, 404);
    assert.equal((await call('POST', '/v1/containers', { name: 'c3', image: 'sample', network: 'blue' })).statusCode, 404);
  });
});
