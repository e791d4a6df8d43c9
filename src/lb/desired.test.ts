import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { defaultServiceSpec, keys, SERVICE_LABELS, type Container, type ContainerStatus, type Service } from '../model/index.ts';
import { desiredRoutes, mayChangeRoutes, plainContainers, type ClusterView } from './desired.ts';

const svc = (name: string, spec: Partial<Service['spec']>): Service => ({
  apiVersion: 'ferry/v1', kind: 'Service', metadata: { name, uid: `u-${name}`, createdAt: '', generation: 1 }, spec: { ...defaultServiceSpec('sample'), ...spec },
});
const rep = (s: Service, n: string, ip?: string): Container => ({
  apiVersion: 'ferry/v1', kind: 'Container', metadata: { name: `${s.metadata.name}-${n}`, uid: `c-${n}`, createdAt: '', generation: 1 },
  spec: { image: 'sample', env: [], ports: [], volumes: [], resources: {}, restart: { policy: 'always', maxRetries: 0 }, state: 'running', labels: { [SERVICE_LABELS.serviceUid]: s.metadata.uid, [SERVICE_LABELS.service]: s.metadata.name } },
  ...(ip ? { network: { ip } } : {}),
});
const running = (c: Container, phase: ContainerStatus['phase'] = 'running'): ContainerStatus => ({
  name: c.metadata.name, uid: c.metadata.uid, node: 'n1', epoch: 1, runtimeId: '', phase, observedGeneration: 1, pid: 1, restartCount: 0, updatedAt: '',
});

describe('desiredRoutes', () => {
  const api = svc('api', { http: { hosts: ['api.local'], pathPrefix: '/' }, port: 8080, health: { kind: 'http', path: '/healthz' } });
  const db = svc('db', { tcpPort: 30001, port: 5432 });
  const internal = svc('internal', {});
  const [a, b, c] = [rep(api, 'aaaaa', '10.0.0.2'), rep(api, 'bbbbb', '10.0.0.3'), rep(api, 'ccccc', '10.0.0.4')];
  const d = rep(db, 'ddddd', '10.0.0.5');
  const base: ClusterView = {
    services: [db, api, internal], containers: [a, b, c, d], statuses: [running(a), running(b), running(c, 'creating'), running(d)], retirements: [], holds: [],
  };

  it('routes HTTP and TCP services to their running replicas; internal services get no route', () => {
    const r = desiredRoutes(base);
    assert.deepEqual(r.map((x) => [x.service, x.mode]), [['api', 'http'], ['db', 'tcp']]);
    assert.deepEqual(r[0]!.servers.map((s) => [s.name, s.address, s.port, s.state]), [['api-aaaaa', '10.0.0.2', 8080, 'ready'], ['api-bbbbb', '10.0.0.3', 8080, 'ready']]);
    assert.deepEqual(r[0]!.health, { kind: 'http', path: '/healthz' });
    assert.equal(r[1]!.tcpPort, 30001);
    assert.equal(r[0]!.hold, false);
  });

  it('drains retiring replicas', () => {
    const r = desiredRoutes({ ...base, retirements: [{ service: 'api', container: a.metadata.name, uid: a.metadata.uid, startedAt: '', until: '' }] });
    assert.deepEqual(r[0]!.servers.map((s) => s.state), ['drain', 'ready']);
  });

  it('a frozen replica leaves the rotation while another serves; alone, its requests are held', () => {
    const h = { container: a.metadata.name, uid: a.metadata.uid, service: 'api' };
    const two = desiredRoutes({ ...base, holds: [h] });
    assert.deepEqual(two[0]!.servers.map((s) => s.state), ['maint', 'ready']);
    assert.equal(two[0]!.hold, false);
    const alone = desiredRoutes({ ...base, holds: [{ container: d.metadata.name, uid: d.metadata.uid, service: 'db' }] });
    assert.equal(alone[1]!.hold, true);
    assert.deepEqual(alone[1]!.servers.map((s) => s.state), ['ready']);
  });

  it('a replica that just moved stays in the rotation until its new node reports', () => {
    const moved = { ...a, placement: { node: 'n2', epoch: 2, scheduledAt: '', reason: '' } };
    const r = desiredRoutes({ ...base, containers: [moved, b], statuses: [running(a, 'stopped'), running(b)] });
    assert.deepEqual(r[0]!.servers.map((s) => [s.name, s.state]), [['api-aaaaa', 'ready'], ['api-bbbbb', 'ready']]);
    const stopped = desiredRoutes({ ...base, containers: [{ ...a, placement: { node: 'n1', epoch: 1, scheduledAt: '', reason: '' } }, b], statuses: [running(a, 'stopped'), running(b)] });
    assert.deepEqual(stopped[0]!.servers.map((s) => s.name), ['api-bbbbb'], 'stopped on its own node: out');
  });

  it('a service with both HTTP and a TCP port gets two routes', () => {
    const both = svc('both', { http: { hosts: ['b.local'], pathPrefix: '/' }, tcpPort: 30002 });
    const r = desiredRoutes({ ...base, services: [both], containers: [], statuses: [] });
    assert.deepEqual(r.map((x) => x.service), ['both', 'both.tcp']);
  });
});

describe('mayChangeRoutes', () => {
  const api = svc('api', { http: { hosts: ['api.local'], pathPrefix: '/' }, port: 8080 });
  const r = rep(api, 'aaaaa', '10.0.0.2');
  const plainOne: Container = { ...r, metadata: { ...r.metadata, name: 'job', uid: 'c-job' }, spec: { ...r.spec, labels: {} } };
  const plain = plainContainers({ containers: [r, plainOne] });
  const put = (key: string, value: unknown) => ({ type: 'put' as const, key, value });

  it('skips changes to containers the last view knew as plain: spec, placement, status, removal', () => {
    assert.deepEqual([...plain.ids], ['job/c-job']);
    assert.equal(mayChangeRoutes(put(`${keys.containers}job`, { ...plainOne, placement: { node: 'n2', epoch: 2, scheduledAt: '', reason: '' } }), plain), false);
    assert.equal(mayChangeRoutes(put(`${keys.statuses}job`, running(plainOne)), plain), false);
    assert.equal(mayChangeRoutes({ type: 'delete', key: `${keys.statuses}job` }, plain), false);
    assert.equal(mayChangeRoutes({ type: 'delete', key: `${keys.containers}job` }, plain), false);
  });

  it('keeps replicas, unknown containers, a plain name reused by a new uid, and every other prefix', () => {
    assert.equal(mayChangeRoutes(put(`${keys.statuses}${r.metadata.name}`, running(r)), plain), true);
    assert.equal(mayChangeRoutes(put(`${keys.containers}${r.metadata.name}`, r), plain), true);
    assert.equal(mayChangeRoutes({ type: 'delete', key: `${keys.containers}${r.metadata.name}` }, plain), true);
    const fresh = { ...plainOne, metadata: { ...plainOne.metadata, name: 'new' } };
    assert.equal(mayChangeRoutes(put(`${keys.containers}new`, fresh), plain), true, 'not in the last view');
    const reborn = { ...r, metadata: { ...r.metadata, name: 'job', uid: 'c-job2' } };
    assert.equal(mayChangeRoutes(put(`${keys.containers}job`, reborn), plain), true, 'same name, now a replica');
    assert.equal(mayChangeRoutes(put(`${keys.statuses}job`, { ...running(plainOne), uid: 'c-job2' }), plain), true, 'same name, new uid');
    assert.equal(mayChangeRoutes(put(`${keys.services}api`, api), plain), true);
    assert.equal(mayChangeRoutes({ type: 'delete', key: `${keys.holds}job` }, plain), true);
  });
});
