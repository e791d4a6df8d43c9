import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { allocate, backendName, GROUPS, groupId, groupOf, growShape, parseBackend, uniformShape } from './pool.ts';
import type { LbRoute, LbState } from './types.ts';

const route = (service: string, servers: string[], extra: Partial<LbRoute> = {}): LbRoute => ({
  service, mode: 'http', hosts: [`${service}.test`], balance: 'roundrobin',
  servers: servers.map((name, i) => ({ name, address: `10.0.0.${i + 1}`, port: 80, state: 'ready' })), ...extra,
});
const RR = 'http_rr_plain_tcpchk';

describe('lb pool', () => {
  it('has one group per combination HAProxy cannot change at run time', () => {
    assert.equal(GROUPS.length, 12);
    assert.equal(new Set(GROUPS.map(groupId)).size, 12);
    assert.ok(!GROUPS.some((g) => g.mode === 'tcp' && g.sticky));
    assert.equal(groupId(groupOf(route('a', []))), RR);
    assert.equal(groupId(groupOf(route('a', [], { balance: 'leastconn', sticky: true, health: { kind: 'http', path: '/h' } }))), 'http_lc_sticky_httpchk');
    assert.equal(groupId(groupOf({ ...route('t', []), mode: 'tcp', hosts: undefined, tcpPort: 1, sticky: true })), 'tcp_rr_plain_tcpchk');
    assert.deepEqual(parseBackend(backendName(RR, 7)), { gid: RR, index: 7 });
  });

  it('keeps placed services and replicas where they are and fills the lowest free slots', () => {
    const shape = uniformShape({ slots: 3, servers: 4 });
    const empty: LbState = { shape, routes: {}, slots: {} };
    const first = allocate(empty, [route('a', ['x', 'y']), route('b', ['z'])], shape);
    assert.ok(first.ok);
    assert.deepEqual(first.slots, { a: { backend: `${RR}_0`, servers: { x: 1, y: 2 } }, b: { backend: `${RR}_1`, servers: { z: 1 } } });
    const current: LbState = { shape, routes: {}, slots: first.slots };
    // y leaves, w and v arrive: w takes never-used slot 3, v slot 4; y's slot 2 is reused only when nothing else is free.
    const second = allocate(current, [route('a', ['x', 'w', 'v']), route('b', ['z'])], shape);
    assert.ok(second.ok);
    assert.deepEqual(second.slots.a, { backend: `${RR}_0`, servers: { x: 1, w: 3, v: 4 } });
    const third = allocate({ shape, routes: {}, slots: second.slots }, [route('a', ['x', 'w', 'v', 'u'])], shape);
    assert.ok(third.ok);
    assert.equal(third.slots.a!.servers.u, 2);
  });

  it('never hands a backend released in the same step to another service, and moves a service whose group changed', () => {
    const shape = uniformShape({ slots: 2, servers: 4 });
    const current: LbState = { shape, routes: {}, slots: { a: { backend: `${RR}_0`, servers: {} }, b: { backend: `${RR}_1`, servers: {} } } };
    const r = allocate(current, [route('c', ['x'])], shape);
    assert.deepEqual(r, { ok: false, shortages: [{ group: RR, what: 'backend', have: 2, need: 3 }] });
    const moved = allocate(current, [route('a', ['x'], { balance: 'leastconn' }), route('b', [])], shape);
    assert.ok(moved.ok);
    assert.equal(moved.slots.a!.backend, 'http_lc_plain_tcpchk_0');
    assert.equal(moved.slots.b!.backend, `${RR}_1`);
  });

  it('reports too many replicas for a backend and grows the shape at least twofold', () => {
    const shape = uniformShape({ slots: 1, servers: 2 });
    const r = allocate({ shape, routes: {}, slots: {} }, [route('a', ['x', 'y', 'z'])], shape);
    assert.deepEqual(r, { ok: false, shortages: [{ group: RR, what: 'server', have: 2, need: 3 }] });
    const grown = growShape(shape, [{ group: RR, what: 'server', have: 2, need: 5 }, { group: 'tcp_lc_plain_httpchk', what: 'backend', have: 1, need: 2 }]);
    assert.deepEqual(grown[RR], { slots: 1, servers: 5 });
    assert.deepEqual(grown.tcp_lc_plain_httpchk, { slots: 2, servers: 2 });
    assert.deepEqual(shape[RR], { slots: 1, servers: 2 }, 'the input shape is not changed');
    assert.deepEqual(growShape(shape, [{ group: RR, what: 'backend', have: 1, need: 2 }])[RR], { slots: 2, servers: 2 });
  });
});
