import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { httpKeys, normalPrefix, validateRoute, validateRoutes } from './routes.ts';
import type { LbRoute } from './types.ts';

const SETTINGS = { http: { address: '127.0.0.1', port: 8080 }, tcp: { address: '127.0.0.1', first: 30000, last: 30099 } };
const web = (service: string, extra: Partial<LbRoute> = {}): LbRoute => ({ service, mode: 'http', hosts: [`${service}.test`], balance: 'roundrobin', servers: [], ...extra });
const tcp = (service: string, tcpPort: number): LbRoute => ({ service, mode: 'tcp', tcpPort, balance: 'leastconn', servers: [] });

function rejects(fn: () => void, code: string, message?: RegExp): void {
  assert.throws(fn, (e: Error & { code?: string }) => {
    assert.equal(e.code, code);
    if (message) assert.match(e.message, message);
    return true;
  });
}

describe('lb routes', () => {
  it('derives map keys that match whole path segments', () => {
    assert.equal(normalPrefix(undefined), '');
    assert.equal(normalPrefix('/'), '');
    assert.equal(normalPrefix('/api/'), '/api');
    assert.deepEqual(httpKeys(web('a', { hosts: ['A.Test', 'b.test'], pathPrefix: '/api/' })), { host: ['a.test/api/', 'b.test/api/'], path: [] });
    assert.deepEqual(httpKeys(web('a', { hosts: undefined, pathPrefix: '/docs' })), { host: [], path: ['/docs/'] });
    assert.deepEqual(httpKeys(web('a', { hosts: [] })), { host: [], path: ['/'] });
    assert.deepEqual(httpKeys(tcp('t', 30000)), { host: [], path: [] });
  });

  it('accepts good routes', () => {
    validateRoutes([
      web('a', { health: { kind: 'http', path: '/healthz' }, sticky: true, servers: [{ name: 'c-1', address: '10.0.0.1', port: 80, weight: 3, state: 'ready' }, { name: 'c-2', address: 'fd00::2', port: 80, state: 'drain' }] }),
      web('b', { hosts: ['a.test'], pathPrefix: '/api' }),
      web('c', { hosts: undefined, pathPrefix: '/' }),
      tcp('t', 30000),
      tcp('u', 30099),
    ], SETTINGS);
  });

  it('refuses two services on one host route, or on one TCP port', () => {
    rejects(() => validateRoutes([web('a'), web('b', { hosts: ['x.test', 'A.TEST'] })], SETTINGS), 'FERRY_ERR_HOST_CLASH', /services "b" and "a" both claim host a\.test, path prefix \//);
    rejects(() => validateRoutes([web('a', { pathPrefix: '/api/' }), web('b', { hosts: ['a.test'], pathPrefix: '/api' })], SETTINGS), 'FERRY_ERR_HOST_CLASH', /path prefix \/api/);
    rejects(() => validateRoutes([web('a', { hosts: undefined, pathPrefix: '/x' }), web('b', { hosts: undefined, pathPrefix: '/x/' })], SETTINGS), 'FERRY_ERR_HOST_CLASH', /any host, path prefix \/x/);
    rejects(() => validateRoutes([tcp('t', 30001), tcp('u', 30001)], SETTINGS), 'FERRY_ERR_TCP_PORT_CLASH', /"u" and "t" both claim TCP port 30001/);
    rejects(() => validateRoutes([web('a'), web('a')], SETTINGS), 'FERRY_ERR_BAD_ROUTE', /listed twice/);
  });

  it('refuses TCP ports outside the range, or with no TCP entry point', () => {
    rejects(() => validateRoute(tcp('t', 30100), SETTINGS), 'FERRY_ERR_PORT_OUT_OF_RANGE', /port 30100 is outside the entry point range 30000-30099/);
    rejects(() => validateRoute(tcp('t', 29999), SETTINGS), 'FERRY_ERR_PORT_OUT_OF_RANGE');
    rejects(() => validateRoute(tcp('t', 30000), { http: SETTINGS.http }), 'FERRY_ERR_PORT_OUT_OF_RANGE', /none/);
  });

  it('refuses malformed routes with the reason', () => {
    const cases: [LbRoute, RegExp][] = [
      [web('bad name'), /service names/],
      [web('a', { hosts: ['a.test:80'] }), /not a host name/],
      [web('a', { hosts: ['*.a.test'] }), /not a host name/],
      [web('a', { pathPrefix: 'api' }), /must start with "\/"/],
      [web('a', { pathPrefix: '/a b' }), /no blanks/],
      [web('a', { tcpPort: 30000 }), /tcpPort is for mode tcp/],
      [{ ...tcp('t', 30000), hosts: ['t.test'] }, /hosts and pathPrefix are for mode http/],
      [{ ...tcp('t', 30000), sticky: true }, /sticky sessions/],
      [web('a', { balance: 'source' as 'roundrobin' }), /balance must be/],
      [web('a', { health: { kind: 'http', path: 'healthz' } }), /health path/],
      [web('a', { servers: [{ name: 'x', address: 'db.local', port: 80, state: 'ready' }] }), /not an IP address/],
      [web('a', { servers: [{ name: 'x', address: '10.0.0.1', port: 0, state: 'ready' }] }), /port 0/],
      [web('a', { servers: [{ name: 'x', address: '10.0.0.1', port: 80, weight: 257, state: 'ready' }] }), /weight 257/],
      [web('a', { servers: [{ name: 'x', address: '10.0.0.1', port: 80, state: 'up' as 'ready' }] }), /state must be/],
      [web('a', { servers: [{ name: 'x', address: '10.0.0.1', port: 80, state: 'ready' }, { name: 'x', address: '10.0.0.2', port: 80, state: 'ready' }] }), /listed twice/],
    ];
    for (const [route, message] of cases) rejects(() => validateRoute(route, SETTINGS), 'FERRY_ERR_BAD_ROUTE', message);
    rejects(() => validateRoute(web('a'), { tcp: SETTINGS.tcp }), 'FERRY_ERR_BAD_ROUTE', /HTTP entry point/);
  });
});
