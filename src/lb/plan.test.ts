import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { lbPaths } from './config.ts';
import { afterReloadCommands, emptyState, mapTables, planApply, resolveHolds } from './plan.ts';
import { uniformShape } from './pool.ts';
import type { LbRoute, LbState } from './types.ts';

const SETTINGS = { http: { address: '127.0.0.1', port: 8080 }, tcp: { address: '127.0.0.1', first: 30000, last: 30009 } };
const PATHS = lbPaths('/s');
const RR = 'http_rr_plain_tcpchk';
const srv = (name: string, last: number, extra: object = {}) => ({ name, address: `10.0.0.${last}`, port: 8080, state: 'ready' as const, ...extra });
const web = (extra: Partial<LbRoute> = {}): LbRoute => ({ service: 'web', mode: 'http', hosts: ['web.test'], balance: 'roundrobin', servers: [srv('c1', 1), srv('c2', 2)], ...extra });

function plan(current: LbState, desired: LbRoute[], allowGrow = true) {
  return planApply(current, desired, SETTINGS, PATHS, { allowGrow });
}

function run(current: LbState, desired: LbRoute[]): { next: LbState; commands: string[] } {
  const p = plan(current, desired);
  assert.equal(p.kind, 'runtime');
  return { next: p.next, commands: p.kind === 'runtime' ? p.commands.map((c) => c.command) : [] };
}

const start = (): LbState => emptyState(uniformShape({ slots: 2, servers: 4 }));

describe('lb plan', () => {
  it('brings a new service up: servers before the route that sends them traffic', () => {
    const { commands, next } = run(start(), [web()]);
    assert.deepEqual(commands, [
      `set server ${RR}_0/s1 addr 10.0.0.1 port 8080`,
      `set server ${RR}_0/s1 weight 1`,
      `disable health ${RR}_0/s1`,
      `set server ${RR}_0/s1 state ready`,
      `set server ${RR}_0/s2 addr 10.0.0.2 port 8080`,
      `set server ${RR}_0/s2 weight 1`,
      `disable health ${RR}_0/s2`,
      `set server ${RR}_0/s2 state ready`,
      `add map /s/hosts.map web.test/ ${RR}_0`,
    ]);
    assert.equal(next.routes.web?.hold, false);
    assert.equal(run(next, [web()]).commands.length, 0, 'the same routes again change nothing');
  });

  it('scales, re-addresses, re-weights and changes states with only what differs', () => {
    const s1 = run(start(), [web()]).next;
    const { commands } = run(s1, [web({ servers: [srv('c1', 9, { weight: 5 }), srv('c2', 2, { state: 'drain' }), srv('c3', 3)] })]);
    assert.deepEqual(commands, [
      `set server ${RR}_0/s1 addr 10.0.0.9 port 8080`,
      `set server ${RR}_0/s1 weight 5`,
      `set server ${RR}_0/s2 state drain`,
      `set server ${RR}_0/s3 addr 10.0.0.3 port 8080`,
      `set server ${RR}_0/s3 weight 1`,
      `disable health ${RR}_0/s3`,
      `set server ${RR}_0/s3 state ready`,
    ]);
    assert.deepEqual(run(s1, [web({ servers: [srv('c2', 2)] })]).commands, [`set server ${RR}_0/s1 state maint`]);
  });

  it('changes routing maps: adds before deletes, and retires a removed service after its route is gone', () => {
    const s1 = run(start(), [web(), { service: 't', mode: 'tcp', tcpPort: 30001, balance: 'leastconn', servers: [srv('t1', 5)] }]).next;
    const moved = run(s1, [web({ hosts: ['new.test'], pathPrefix: '/app/' })]).commands;
    assert.deepEqual(moved, [
      `add map /s/hosts.map new.test/app/ ${RR}_0`,
      'del map /s/hosts.map web.test/',
      'del map /s/tcp.map 30001',
      'set server tcp_lc_plain_tcpchk_0/s1 state maint',
    ]);
    assert.deepEqual([...mapTables(s1).tcp], [['30001', 'tcp_lc_plain_tcpchk_0']]);
  });

  it('sets health paths through the map the check reads, and switches checks per server', () => {
    const s1 = run(start(), [web({ health: { kind: 'http', path: '/healthz' } })]).next;
    assert.equal(s1.slots.web?.backend, 'http_rr_plain_httpchk_0');
    assert.deepEqual(run(s1, [web({ health: { kind: 'http', path: '/ready' } })]).commands, ['set map /s/health.map http_rr_plain_httpchk_0 /ready']);
    // http → tcp check is another group: the service moves to a fresh backend, then the old one is retired.
    const moved = run(s1, [web({ health: { kind: 'tcp' } })]).commands;
    assert.equal(moved[0], `set server ${RR}_0/s1 addr 10.0.0.1 port 8080`);
    assert.ok(moved.includes(`enable health ${RR}_0/s1`));
    assert.ok(moved.indexOf(`set map /s/hosts.map web.test/ ${RR}_0`) < moved.indexOf('set server http_rr_plain_httpchk_0/s1 state maint'));
    assert.equal(moved.at(-1), 'del map /s/health.map http_rr_plain_httpchk_0');
  });

  it('holds through a proc variable, keeps a hold that apply does not mention, and releases on request', () => {
    const s1 = run(start(), [web()]).next;
    const on = run(s1, [web({ hold: true })]);
    assert.deepEqual(on.commands, [`experimental-mode on; set var proc.ferry_hold_${RR}_0 int(1)`]);
    assert.equal(run(on.next, [web({ servers: [srv('c1', 1)] })]).next.routes.web?.hold, true);
    assert.deepEqual(resolveHolds(on.next, [web(), web({ service: 'other', hold: undefined })]).map((r) => r.hold), [true, false]);
    assert.deepEqual(run(on.next, [web({ hold: false })]).commands, [`experimental-mode on; set var proc.ferry_hold_${RR}_0 int(0)`]);
    const removed = run(on.next, []).commands;
    assert.equal(removed.at(-1), `experimental-mode on; set var proc.ferry_hold_${RR}_0 int(0)`, 'a released backend is un-held last');
  });

  it('plans a reload onto a bigger pool, or refuses when it may not grow', () => {
    const s1 = run(start(), [web(), web({ service: 'b', hosts: ['b.test'] })]).next;
    const three = [web(), web({ service: 'b', hosts: ['b.test'] }), web({ service: 'c', hosts: ['c.test'] })];
    const p = plan(s1, three);
    assert.equal(p.kind, 'reload');
    assert.match(p.kind === 'reload' ? p.reason : '', /group http_rr_plain_tcpchk needs 3 backends, has 2/);
    assert.deepEqual(p.next.shape[RR], { slots: 4, servers: 4 });
    assert.deepEqual(Object.values(p.next.slots).map((s) => s.backend), [`${RR}_0`, `${RR}_1`, `${RR}_2`]);
    assert.throws(() => plan(s1, three, false), { code: 'FERRY_ERR_POOL_EXHAUSTED' });
    const many = [web({ servers: [1, 2, 3, 4, 5].map((i) => srv(`c${i}`, i)) })];
    assert.throws(() => plan(s1, many, false), /no free server slot in pool group http_rr_plain_tcpchk \(has 4, needs 5\)/);
  });

  it('validates before planning, and lists what a reloaded config cannot say', () => {
    assert.throws(() => plan(start(), [web(), web({ service: 'b' })]), { code: 'FERRY_ERR_HOST_CLASH' });
    const s1 = run(start(), [web({ servers: [srv('c1', 1, { state: 'drain' }), srv('c2', 2)], health: { kind: 'tcp' } }), web({ service: 'b', hosts: ['b.test'] })]).next;
    assert.deepEqual(afterReloadCommands(s1).map((c) => c.command), [
      `set server ${RR}_0/s1 state drain`,
      `disable health ${RR}_1/s1`,
      `disable health ${RR}_1/s2`,
    ]);
  });
});
