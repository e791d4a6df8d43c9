/**
 * The name sources route (GET /v1/agent/names) of a real manager API over a memory store, as the
 * agent's name service uses it: the projection, the long poll, and a joined node's credential.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { openStore, put, type Store } from '../../store/index.ts';
import { keys, defaultServiceSpec, defaultSpec, SERVICE_LABELS, type Container, type ContainerStatus, type Retirement, type Service } from '../../model/index.ts';
import { buildApi, NodeLeases } from '../../api/index.ts';
import { createJoinToken, joinNode } from '../../api/join.ts';
import { FerryClient } from '../../client/index.ts';
import { buildNameTable, lookupName } from './table.ts';

const TOKEN = 'test-token';
const now = '2026-01-01T00:00:00Z';

const service: Service = {
  apiVersion: 'ferry/v1', kind: 'Service', metadata: { name: 'web', uid: 'svc-web', createdAt: now, generation: 1 },
  spec: { ...defaultServiceSpec('sample'), replicas: 2, env: ['SECRET=hunter2'] },
};
const replica = (name: string, ip: string): Container => ({
  apiVersion: 'ferry/v1', kind: 'Container', metadata: { name, uid: `u-${name}`, createdAt: now, generation: 1 },
  spec: { ...defaultSpec('sample'), env: ['SECRET=hunter2'], labels: { [SERVICE_LABELS.service]: 'web', [SERVICE_LABELS.serviceUid]: 'svc-web' } },
  placement: { node: 'n1', epoch: 1, scheduledAt: now, reason: '' }, network: { ip },
});
const status = (c: Container, o: Partial<ContainerStatus> = {}): ContainerStatus => ({
  name: c.metadata.name, uid: c.metadata.uid, node: 'n1', epoch: 1, runtimeId: `rt-${c.metadata.name}`, phase: 'running',
  observedGeneration: 1, pid: 42, restartCount: 0, updatedAt: now, ...o,
});

describe('GET /v1/agent/names', () => {
  let store: Store;
  let app: FastifyInstance;
  let client: FerryClient;
  const a = replica('web-aaaaa', '10.240.0.5');
  const b = replica('web-bbbbb', '10.240.0.3');

  before(async () => {
    store = await openStore('memory:');
    app = await buildApi({ store, token: TOKEN, agentToken: TOKEN, version: 'test', leases: new NodeLeases(store, 10), spoolDir: '/tmp', nodeLeaseTtl: 10 });
    const url = await app.listen({ host: '127.0.0.1', port: 0 });
    client = new FerryClient({ url, token: TOKEN });
    await put(store, keys.service('web'), service);
    for (const c of [a, b]) {
      await put(store, keys.container(c.metadata.name), c);
      await put(store, keys.status(c.metadata.name), status(c));
    }
  });
  after(async () => {
    await app.close();
    await store.close();
  });

  it('sends names, networks, addresses and phases — never a spec', async () => {
    const r = await client.agent.names();
    assert.ok(r.revision > 0);
    assert.deepEqual(r.services, [{ name: 'web', uid: 'svc-web' }]);
    assert.deepEqual(r.containers.map((c) => c.name), ['web-aaaaa', 'web-bbbbb']);
    assert.deepEqual(r.containers[0], { name: 'web-aaaaa', uid: 'u-web-aaaaa', ip: '10.240.0.5', service: 'web', serviceUid: 'svc-web' });
    assert.deepEqual(r.statuses[1], { name: 'web-bbbbb', uid: 'u-web-bbbbb', node: 'n1', phase: 'running' });
    assert.doesNotMatch(JSON.stringify(r), /hunter2|sample/);
    const t = buildNameTable(r);
    assert.deepEqual(lookupName(t, 'default', ['web']), { rcode: 'NOERROR', addresses: ['10.240.0.3', '10.240.0.5'] });
  });

  it('with afterRevision, answers when a name changes — not when a status only refreshes other fields', async () => {
    const first = await client.agent.names();
    let answered = false;
    const next = client.agent.names({ afterRevision: first.revision, waitMs: 30_000 }).then((r) => { answered = true; return r; });
    // A refresh of what names do not depend on (migratability, its time) keeps the poll waiting.
    await put(store, keys.status(a.metadata.name), status(a, { migratable: { ok: true, reasons: [], checkedAt: now }, updatedAt: '2026-01-01T00:00:01Z' }));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(answered, false, 'a status refresh alone does not answer the poll');
    const retirement: Retirement = { service: 'web', container: a.metadata.name, uid: a.metadata.uid, startedAt: now, until: now };
    await put(store, keys.retirement(a.metadata.name), retirement);
    const r = await next;
    assert.deepEqual(r.retirements, [{ container: a.metadata.name, uid: a.metadata.uid }]);
    assert.deepEqual(lookupName(buildNameTable(r), 'default', ['web']), { rcode: 'NOERROR', addresses: ['10.240.0.3'] });
    assert.ok(r.revision > first.revision);
  });

  it('answers at once when nothing changed within waitMs, or when the revision is ahead of the store', async () => {
    const first = await client.agent.names();
    assert.equal((await client.agent.names({ afterRevision: first.revision, waitMs: 0 })).revision, first.revision);
    assert.equal((await client.agent.names({ afterRevision: first.revision + 1000 })).revision, first.revision);
  });

  it('a joined node may read it with its own credential', async () => {
    const token = await createJoinToken(store, {});
    const { credential } = await joinNode(store, 'n9', token.token);
    const r = await new FerryClient({ url: client.endpoint.url, token: credential }).agent.names();
    assert.deepEqual(r.services.map((s) => s.name), ['web']);
  });
});
