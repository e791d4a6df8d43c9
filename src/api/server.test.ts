import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { openStore, put, type Store } from '../store/index.ts';
import { keys, type NodeImages, type ImageRecord } from '../model/index.ts';
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
