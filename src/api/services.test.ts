import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { openStore, put, type Store } from '../store/index.ts';
import { keys, SERVICE_LABELS, type Container, type ContainerStatus, type NodeImages, type ImageRecord, type Retirement, type ServiceView } from '../model/index.ts';
import { reconcileService } from '../controllers/index.ts';
import { buildApi, NodeLeases } from './index.ts';

const TOKEN = 'test-token';
const auth = { authorization: `Bearer ${TOKEN}` };
const image = (tag: string, b: string): ImageRecord => ({
  id: 'sha256:' + b.repeat(32), tags: [`${tag}:latest`], size: 1000, created: '2026-01-01T00:00:00Z', architecture: 'amd64', os: 'linux', layers: [],
  config: { entrypoint: ['/app/sample-app'], cmd: [], env: [], workingDir: '/', user: '', exposedPorts: ['80/tcp'], labels: {} },
});

async function replicas(store: Store, svc: string): Promise<Container[]> {
  return (await store.list<Container>(keys.containers)).items.map((kv) => kv.value).filter((c) => c.spec.labels[SERVICE_LABELS.service] === svc && !c.metadata.deleting);
}

/** Reports every replica of `svc` running, as an agent would. */
async function runAll(store: Store, svc: string): Promise<void> {
  for (const c of await replicas(store, svc)) {
    const st: ContainerStatus = {
      name: c.metadata.name, uid: c.metadata.uid, node: 'n1', epoch: 1, runtimeId: c.metadata.name, phase: 'running', observedGeneration: c.metadata.generation,
      pid: 1, restartCount: 0, updatedAt: '',
    };
    await put(store, keys.status(c.metadata.name), st);
  }
}

describe('services API and controller', () => {
  let store: Store;
  let app: FastifyInstance;
  before(async () => {
    store = await openStore('memory:');
    app = await buildApi({ store, token: TOKEN, agentToken: TOKEN, version: 'test', leases: new NodeLeases(store, 10), spoolDir: '/tmp', nodeLeaseTtl: 10 });
    await put<NodeImages>(store, keys.nodeImages('n1'), { node: 'n1', images: [image('sample', 'ab'), image('other', 'cd')], updatedAt: '' });
  });
  after(async () => { await app.close(); await store.close(); });

  const req = (method: 'POST' | 'PATCH' | 'DELETE' | 'GET', url: string, payload?: object) => app.inject({ method, url, headers: auth, ...(payload ? { payload } : {}) });

  it('creates a service; the controller makes its replicas', async () => {
    const r = await req('POST', '/v1/services', { name: 'api', image: 'sample', replicas: 3, http: { hosts: ['API.local'], pathPrefix: '/' }, health: { kind: 'http', path: '/healthz' } });
    assert.equal(r.statusCode, 201, r.body);
    assert.deepEqual((r.json() as ServiceView).service.spec.http, { hosts: ['api.local'], pathPrefix: '/' }, 'host names are normalized');
    const step = await reconcileService(store, 'api');
    assert.equal(step.created.length, 3);
    assert.equal((await replicas(store, 'api')).length, 3);
    assert.deepEqual((await reconcileService(store, 'api')).created, [], 'a second pass changes nothing');
  });

  it('refuses bad input with clear errors and changes nothing', async () => {
    const cases: Array<[object, number, RegExp]> = [
      [{ name: 'x', image: 'sample', replicas: -1 }, 400, /replicas/],
      [{ name: 'x', image: 'nope' }, 404, /no image "nope"/],
      [{ name: 'x', image: 'sample', http: { hosts: ['api.local'], pathPrefix: '/' } }, 409, /already routed to service "api"/],
      [{ name: 'x', image: 'sample', http: { hosts: ['bad host!'], pathPrefix: '/' } }, 400, /not a host name/],
      [{ name: 'x', image: 'sample', tcpPort: 80 }, 400, /tcpPort/],
      [{ name: 'x', image: 'sample', update: { maxSurge: 0, maxUnavailable: 0 } }, 400, /can never replace/],
      [{ name: 'api', image: 'sample' }, 409, /already exists/],
    ];
    for (const [body, status, re] of cases) {
      const r = await req('POST', '/v1/services', body);
      assert.equal(r.statusCode, status, `${JSON.stringify(body)} → ${r.body}`);
      assert.match(r.json().message, re);
    }
    const t = await req('POST', '/v1/services', { name: 't1', image: 'sample', tcpPort: 30001 });
    assert.equal(t.statusCode, 201);
    const clash = await req('POST', '/v1/services', { name: 't2', image: 'sample', tcpPort: 30001 });
    assert.equal(clash.statusCode, 409);
    assert.match(clash.json().message, /port 30001 is already used by service "t1"/);
    assert.equal((await req('GET', '/v1/services/x')).statusCode, 404);
    assert.equal((await req('DELETE', '/v1/services/t1')).statusCode, 202);
  });

  it('rolls to a new image one surge replica at a time, retiring old ones only when new ones are ready', async () => {
    await runAll(store, 'api');
    const before = (await replicas(store, 'api')).map((c) => c.metadata.name).sort();
    const r = await req('PATCH', '/v1/services/api', { image: 'other' });
    assert.equal(r.statusCode, 200, r.body);
    const step = await reconcileService(store, 'api');
    assert.equal(step.created.length, 1, 'one surge replica');
    assert.deepEqual(step.retired, [], 'no old replica leaves before a new one is ready');
    for (let i = 0; i < 10; i++) {
      await runAll(store, 'api');
      await reconcileService(store, 'api', Date.now() + 60_000);
    }
    const after = await replicas(store, 'api');
    const live = after.filter((c) => !before.includes(c.metadata.name));
    assert.equal(live.length, 3, 'three new replicas');
    assert.ok(live.every((c) => c.spec.image === 'other'));
    const retiring = (await store.list<Retirement>(keys.retirements)).items.map((kv) => kv.value.container);
    for (const old of before) {
      const c = after.find((x) => x.metadata.name === old);
      assert.ok(!c || retiring.includes(old), `${old} is retired or removed`);
    }
  });

  it('scale to 1 retires replicas with a drain deadline, then removes them', async () => {
    await req('PATCH', '/v1/services/api', { replicas: 1, drainMs: 1000 });
    const now = Date.now();
    const step = await reconcileService(store, 'api', now);
    assert.ok(step.retired.length >= 2, `retired ${step.retired.join(',')}`);
    const rec = (await store.get<Retirement>(keys.retirement(step.retired[0]!)))!.value;
    assert.equal(Date.parse(rec.until) - Date.parse(rec.startedAt), 1000);
    assert.ok(!step.removed.includes(step.retired[0]!), 'not removed before its deadline');
    const later = await reconcileService(store, 'api', now + 1001);
    assert.ok(step.retired.every((n) => later.removed.includes(n)), 'removed after the deadline');
  });
});
