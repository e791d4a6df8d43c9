import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { lbPaths, renderConfig, renderMaps } from './config.ts';
import { emptyState, planApply } from './plan.ts';
import { uniformShape } from './pool.ts';
import { resolveSettings } from './settings.ts';
import type { LbRoute } from './types.ts';

const PATHS = lbPaths('/run/ferry-lb');
const settings = resolveSettings({
  stateDir: PATHS.dir,
  http: { port: 8080 },
  tcp: { first: 30000, last: 30099 },
  pool: { slots: 1, servers: 3 },
  check: { interMs: 500 },
  hold: { maxWaitMs: 7000, maxQueue: 50 },
  cookie: { key: 'k3y' },
});

const block = (cfg: string, head: string): string => {
  const start = cfg.indexOf(`${head}\n`);
  assert.ok(start >= 0, `no "${head}" in config`);
  const end = cfg.indexOf('\n\n', start);
  return cfg.slice(start, end < 0 ? undefined : end);
};

describe('lb config', () => {
  it('renders the runtime-steerable base: admin socket, Lua, frontends on maps, a pool of disabled server templates', () => {
    const cfg = renderConfig(settings, PATHS, emptyState(uniformShape(settings.pool)));
    assert.match(cfg, /stats socket \/run\/ferry-lb\/admin.sock mode 600 level admin expose-fd listeners/);
    assert.match(cfg, /lua-load \/run\/ferry-lb\/hold.lua/);
    assert.match(cfg, /set-var proc.ferry_hold_http_rr_plain_tcpchk_0 int\(0\)/);
    assert.match(cfg, /timeout client 60000ms/);
    const http = block(cfg, 'frontend ferry_http');
    assert.match(http, /bind 127.0.0.1:8080/);
    assert.match(http, /set-var\(txn.ferry_be\) var\(txn.ferry_key\),map_beg\(\/run\/ferry-lb\/hosts.map\)/);
    assert.match(http, /use_backend %\[var\(txn.ferry_be\)\] if \{ var\(txn.ferry_be\) -m found \}/);
    const tcp = block(cfg, 'frontend ferry_tcp');
    assert.match(tcp, /bind 127.0.0.1:30000-30099/);
    assert.match(tcp, /use_backend %\[dst_port,map\(\/run\/ferry-lb\/tcp.map\)\]/);
    const sticky = block(cfg, 'backend http_lc_sticky_httpchk_0');
    assert.match(sticky, /balance leastconn/);
    assert.match(sticky, /cookie FERRY_SRV insert indirect nocache dynamic\n {2}dynamic-cookie-key k3y/);
    assert.match(sticky, /http-check send meth GET uri-lf %\[str\(http_lc_sticky_httpchk_0\),map\(\/run\/ferry-lb\/health.map,\/\)\]/);
    assert.match(sticky, /http-request lua.ferry_hold http_lc_sticky_httpchk_0 7000 50 if \{ var\(proc.ferry_hold_http_lc_sticky_httpchk_0\) -m int gt 0 \}/);
    assert.match(sticky, /default-server check inter 500ms fall 3 rise 2/);
    assert.match(sticky, /server-template s 1-3 0.0.0.0:0 disabled/);
    const tcpBackend = block(cfg, 'backend tcp_rr_plain_tcpchk_0');
    assert.match(tcpBackend, /mode tcp/);
    assert.match(tcpBackend, /tcp-request inspect-delay 8000ms\n {2}tcp-request content lua.ferry_hold/);
    assert.doesNotMatch(tcpBackend, /httpchk|cookie/);
    assert.equal(cfg.match(/^backend /gm)?.length, 13, '12 pooled backends and the no-route one');
  });

  it('renders live state into a reload config and its maps (servers, weights, holds)', () => {
    const routes: LbRoute[] = [
      { service: 'web', mode: 'http', hosts: ['web.test'], pathPrefix: '/app', balance: 'roundrobin', hold: true, servers: [
        { name: 'a', address: '10.0.0.1', port: 80, weight: 4, state: 'ready' },
        { name: 'b', address: 'fd00::2', port: 80, state: 'maint' },
      ] },
      { service: 'db', mode: 'tcp', tcpPort: 30005, balance: 'leastconn', health: { kind: 'http', path: '/up' }, servers: [{ name: 'd', address: '10.0.0.3', port: 5432, state: 'ready' }] },
    ];
    const p = planApply(emptyState(uniformShape(settings.pool)), routes, settings, PATHS, { allowGrow: true });
    const cfg = renderConfig(settings, PATHS, p.next);
    assert.match(cfg, /set-var proc.ferry_hold_http_rr_plain_tcpchk_0 int\(1\)/);
    const web = block(cfg, 'backend http_rr_plain_tcpchk_0');
    assert.match(web, /server s1 10.0.0.1:80 weight 4\n {2}server s2 ipv6@fd00::2:80 weight 1 disabled\n {2}server s3 0.0.0.0:0 disabled/);
    assert.deepEqual(renderMaps(p.next), { host: 'web.test/app/ http_rr_plain_tcpchk_0\n', path: '', tcp: '30005 tcp_lc_plain_httpchk_0\n', health: 'tcp_lc_plain_httpchk_0 /up\n' });
  });

  it('checks options and fills defaults', () => {
    const d = resolveSettings({ stateDir: '/x' });
    assert.deepEqual([d.pool, d.hold, d.http, d.tcp], [{ slots: 4, servers: 16 }, { maxWaitMs: 10_000, maxQueue: 1000 }, undefined, undefined]);
    assert.match(d.cookie.key, /^[0-9a-f]{24}$/);
    const bad: [Parameters<typeof resolveSettings>[0], RegExp][] = [
      [{ stateDir: '' }, /stateDir is required/],
      [{ stateDir: `/${'x'.repeat(100)}` }, /too long/],
      [{ stateDir: '/x', http: { port: 70000 } }, /http.port/],
      [{ stateDir: '/x', http: { address: 'localhost', port: 80 } }, /not an IP address/],
      [{ stateDir: '/x', tcp: { first: 30010, last: 30000 } }, /is empty/],
      [{ stateDir: '/x', http: { port: 30005 }, tcp: { first: 30000, last: 30010 } }, /inside the tcp range/],
      [{ stateDir: '/x', pool: { slots: 0 } }, /pool.slots/],
      [{ stateDir: '/x', cookie: { name: 'a b' } }, /cookie/],
    ];
    for (const [o, re] of bad) assert.throws(() => resolveSettings(o), (e: Error & { code?: string }) => e.code === 'FERRY_ERR_BAD_OPTIONS' && re.test(e.message));
  });
});
