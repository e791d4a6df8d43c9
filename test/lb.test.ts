/**
 * The entry point against a real HAProxy 2.6: routing by host and path prefix, scaling and draining
 * with no reload, health checks, holds (HTTP and TCP) that only the held service feels, TCP routing
 * by port, refused bad input, and — only when the pool runs out — a reported hitless reload.
 * Backends are small Node servers on loopback ports that answer with their own id.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lb, type LbEvent, type LbRoute, type LbServer } from '../src/lb/index.ts';
import { freePortRange, httpGet, processesMatching, startHttpBackend, startTcpBackend, tcpRead, type HttpBackend, type TcpBackend } from '../src/lb/testkit.ts';
import { ensurePrerequisites, skipUnlessReady } from './support/prereq.ts';
import { until } from './support/wait.ts';

const TOOLS = ['haproxy'];

describe('lb: HAProxy steered through its runtime API', { skip: skipUnlessReady(TOOLS) }, () => {
  let dir = '';
  let lb: Lb | undefined;
  let httpPort = 0;
  let tcpFirst = 0;
  const events: LbEvent[] = [];
  const http = new Map<string, HttpBackend>();
  const tcp = new Map<string, TcpBackend>();
  let startPids = { master: 0, worker: 0 };

  const L = (): Lb => lb ?? assert.fail('lb not started');
  const srv = (id: string, state: LbServer['state'] = 'ready'): LbServer => ({ name: id, address: '127.0.0.1', port: (http.get(id) ?? tcp.get(id))!.port, state });
  const get = (host: string, path = '/', agent?: Agent) => httpGet(httpPort, host, path, agent);
  const bodies = async (host: string, n: number, path = '/'): Promise<string[]> => {
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push((await get(host, path)).body);
    return out;
  };
  const count = (xs: string[]): Record<string, number> => xs.reduce<Record<string, number>>((m, x) => ({ ...m, [x]: (m[x] ?? 0) + 1 }), {});
  const statOf = async (service: string) => (await L().stats()).find((s) => s.service === service);

  /** Four keep-alive clients GETting `host` in a loop until stopped; answers carry the start order. */
  const clientLoad = (host: string) => {
    const agent = new Agent({ keepAlive: true, maxSockets: 4 });
    const answers: { seq: number; body: string }[] = [];
    const failures: string[] = [];
    let seq = 0;
    let running = true;
    const loop = async () => {
      while (running) {
        const n = seq++;
        try {
          const a = await get(host, '/', agent);
          if (a.status !== 200) failures.push(`#${n}: HTTP ${a.status} ${a.body}`);
          answers.push({ seq: n, body: a.body });
        } catch (e) {
          failures.push(`#${n}: ${(e as Error).message}`);
        }
      }
    };
    const clients = [loop(), loop(), loop(), loop()];
    return {
      answers, failures, seq: () => seq,
      stop: async () => { running = false; await Promise.all(clients); agent.destroy(); },
    };
  };

  // The desired routes; each test edits its part and applies the whole set.
  const routes = new Map<string, LbRoute>();
  const apply = async () => L().apply([...routes.values()]);

  before(async () => {
    ensurePrerequisites(TOOLS);
    dir = mkdtempSync(join(tmpdir(), 'ferry-lb-'));
    for (const id of ['a1', 'a2', 'a3', 'a4', 'b1', 'p1', 'q1', 'd1', 'd2', 'h1', 'h2']) http.set(id, await startHttpBackend(id));
    for (const id of ['t1', 't2', 't3']) tcp.set(id, await startTcpBackend(id));
    tcpFirst = await freePortRange(9);
    httpPort = tcpFirst + 8;
    lb = await Lb.start({
      stateDir: join(dir, 'state'),
      http: { address: '127.0.0.1', port: httpPort },
      tcp: { address: '127.0.0.1', first: tcpFirst, last: tcpFirst + 7 },
      pool: { slots: 2, servers: 4 },
      check: { interMs: 100, fall: 2, rise: 2 },
      hold: { maxWaitMs: 4000, maxQueue: 3 },
      nbthread: 2,
      onEvent: (e) => events.push(e),
    });
    const p = await L().processInfo();
    startPids = { master: p.masterPid, worker: p.workerPid };
  });

  after(async () => {
    const leftovers: string[] = [];
    try {
      await lb?.stop();
    } finally {
      const pidfile = join(dir, 'state', 'haproxy.pid');
      try {
        const pid = Number(readFileSync(pidfile, 'utf8'));
        if (pid > 1) process.kill(pid, 'SIGKILL');
        leftovers.push(`haproxy master ${pid} still running`);
      } catch { /* stopped and pidfile removed: the normal case */ }
      for (const pid of dir ? processesMatching(dir) : []) {
        leftovers.push(`process ${pid} still running`);
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      }
      for (const b of [...http.values(), ...tcp.values()]) await b.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
    assert.deepEqual(leftovers, [], `teardown found leftovers: ${leftovers.join('; ')}`);
  });

  it('routes by Host and by longest path prefix, and round-robins across servers', async () => {
    routes.set('alpha', { service: 'alpha', mode: 'http', hosts: ['alpha.test'], balance: 'roundrobin', servers: [srv('a1'), srv('a2')] });
    routes.set('beta', { service: 'beta', mode: 'http', hosts: ['beta.test', 'www.beta.test'], balance: 'leastconn', servers: [srv('b1')] });
    routes.set('api', { service: 'api', mode: 'http', hosts: ['alpha.test'], pathPrefix: '/api', balance: 'roundrobin', servers: [srv('p1')] });
    routes.set('docs', { service: 'docs', mode: 'http', pathPrefix: '/docs/', balance: 'leastconn', servers: [srv('q1')] });
    const r = await apply();
    assert.equal(r.reloaded, false);
    assert.deepEqual(count(await bodies('alpha.test', 10)), { a1: 5, a2: 5 });
    assert.deepEqual(await bodies('beta.test', 2), ['b1', 'b1']);
    assert.equal((await get('WWW.Beta.test:8080')).body, 'b1');
    assert.equal((await get('alpha.test', '/api')).body, 'p1');
    assert.equal((await get('alpha.test', '/api/v1/x?y=1')).body, 'p1');
    assert.match((await get('alpha.test', '/apix')).body, /^a[12]$/, 'a prefix matches whole segments only');
    assert.equal((await get('anything.test', '/docs/intro')).body, 'q1', 'a host-less route takes any host');
    assert.match((await get('alpha.test', '/docs')).body, /^a[12]$/, 'a host route wins over a host-less one');
    assert.equal((await get('nobody.test')).status, 404);
  });

  it('adds and removes servers at run time with zero failed requests and no reload', async () => {
    const load = clientLoad('alpha.test');
    const { answers, failures } = load;
    try {
      const seenAfter = (from: number, id: string) => answers.some((a) => a.seq >= from && a.body === id);
      routes.get('alpha')!.servers = [srv('a1'), srv('a2'), srv('a3'), srv('a4')];
      assert.equal((await apply()).reloaded, false);
      await until('a3 and a4 answer', () => (seenAfter(0, 'a3') && seenAfter(0, 'a4') ? true : undefined));
      routes.get('alpha')!.servers = [srv('a2'), srv('a3'), srv('a4')];
      assert.equal((await apply()).reloaded, false);
      const afterA1 = load.seq();
      await until('a few hundred answers without a1', () => (answers.filter((a) => a.seq >= afterA1).length > 200 ? true : undefined));
      routes.get('alpha')!.servers = [srv('a3'), srv('a4')];
      assert.equal((await apply()).reloaded, false);
      const afterA2 = load.seq();
      await until('a few hundred answers without a2', () => (answers.filter((a) => a.seq >= afterA2).length > 200 ? true : undefined));
      // Requests started before this apply began (and after a removal returned) must not reach the removed servers.
      const back = load.seq();
      routes.get('alpha')!.servers = [srv('a1'), srv('a2')];
      assert.equal((await apply()).reloaded, false);
      await until('a1 and a2 answer again', () => (seenAfter(back, 'a1') && seenAfter(back, 'a2') ? true : undefined));
      assert.ok(!answers.some((a) => a.seq >= afterA1 && a.seq < back && a.body === 'a1'), 'a1 got requests sent after its removal');
      assert.ok(!answers.some((a) => a.seq >= afterA2 && a.seq < back && a.body === 'a2'), 'a2 got requests sent after its removal');
    } finally {
      await load.stop();
    }
    assert.deepEqual(failures, [], `failed requests: ${failures.slice(0, 5).join('; ')}`);
    assert.ok(answers.length > 400, `only ${answers.length} requests ran`);
    const p = await L().processInfo();
    assert.deepEqual({ master: p.masterPid, worker: p.workerPid, reloads: p.masterReloads, old: p.oldWorkers.length }, { ...startPids, reloads: 0, old: 0 }, 'HAProxy was reloaded');
    assert.ok(!events.some((e) => e.type === 'reloaded'));
  });

  it('drains a server: its slow request finishes, it gets nothing new, then it is removed', async () => {
    routes.set('slow', { service: 'slow', mode: 'http', hosts: ['slow.test'], balance: 'roundrobin', sticky: true, servers: [srv('d1')] });
    await apply();
    const order: string[] = [];
    const d1 = http.get('d1')!;
    const arrived = new Promise<void>((r) => d1.events.on('request', (p: string) => { if (p === '/slow') r(); }));
    const slowAnswer = get('slow.test', '/slow').then((a) => { order.push(`slow answered by ${a.body}`); return a; });
    await arrived;
    routes.get('slow')!.servers = [srv('d1'), srv('d2')];
    await apply();
    const waiting = new Promise<void>((r) => {
      const check = setInterval(() => {
        if (events.some((e) => e.type === 'drain' && e.server === 'd1' && e.phase === 'waiting')) { clearInterval(check); r(); }
      }, 20);
    });
    const drained = L().drain('slow', 'd1', 60_000, 50).then((res) => { order.push('drain done'); return res; });
    await waiting;
    assert.deepEqual(await bodies('slow.test', 6), ['d2', 'd2', 'd2', 'd2', 'd2', 'd2'], 'a draining server got new requests');
    assert.equal((await statOf('slow'))?.servers.find((s) => s.name === 'd1')?.status, 'DRAIN');
    order.push('release slow');
    d1.releaseSlow();
    assert.equal((await slowAnswer).body, 'd1');
    const res = await drained;
    assert.deepEqual(res, { service: 'slow', server: 'd1', drained: true, sessionsLeft: 0, removed: true });
    assert.deepEqual(order, ['release slow', 'slow answered by d1', 'drain done']);
    assert.deepEqual((await statOf('slow'))?.servers.map((s) => s.name), ['d2']);
    assert.deepEqual(L().routes().find((r) => r.service === 'slow')?.servers.map((s) => s.name), ['d2']);
    routes.get('slow')!.servers = [srv('d2')];
  });

  it('takes a server failing its health check out of rotation and back when it passes', async () => {
    routes.set('hc', { service: 'hc', mode: 'http', hosts: ['hc.test'], balance: 'roundrobin', health: { kind: 'http', path: '/healthz' }, servers: [srv('h1'), srv('h2')] });
    await apply();
    const status = async (name: string) => (await statOf('hc'))?.servers.find((s) => s.name === name)?.status;
    await until('h1 and h2 up', async () => ((await status('h1')) === 'UP' && (await status('h2')) === 'UP' ? true : undefined));
    http.get('h2')!.failHealth(true);
    await until('h2 down', async () => ((await status('h2')) === 'DOWN' ? true : undefined));
    assert.deepEqual(await bodies('hc.test', 6), ['h1', 'h1', 'h1', 'h1', 'h1', 'h1']);
    http.get('h2')!.failHealth(false);
    await until('h2 up again', async () => ((await status('h2')) === 'UP' ? true : undefined));
    assert.deepEqual(count(await bodies('hc.test', 6)), { h1: 3, h2: 3 });
    // The check path changes at run time too (a map entry the check reads).
    routes.get('hc')!.health = { kind: 'http', path: '/ready' };
    assert.equal((await apply()).reloaded, false);
    const h1 = http.get('h1')!;
    const from = h1.seen.length;
    await until('checks on /ready', () => (h1.seen.slice(from).includes('/ready') ? true : undefined));
  });

  it('holds new requests of a service until released, and only that service', async () => {
    await L().hold('alpha', true);
    const order: string[] = [];
    const before = [...http.values()].reduce((n, b) => n + b.seen.filter((p) => p === '/held').length, 0);
    const held = get('alpha.test', '/held').then((a) => { order.push(`held answered by ${a.body}`); return a; });
    await until('the request waits at HAProxy', async () => ((await statOf('alpha'))?.hold.waiting === 1 ? true : undefined));
    assert.equal((await get('beta.test')).body, 'b1', 'another service is not held');
    order.push('beta answered');
    assert.equal([...http.values()].reduce((n, b) => n + b.seen.filter((p) => p === '/held').length, 0), before, 'a held request reached a backend');
    order.push('release');
    await L().hold('alpha', false);
    assert.match((await held).body, /^a[12]$/);
    assert.deepEqual(order, ['beta answered', 'release', 'held answered by ' + (await held).body]);
    assert.deepEqual(events.filter((e) => e.type === 'hold').map((e) => (e.type === 'hold' ? e.on : undefined)), [true, false]);
  });

  it('bounds holds: a full queue answers 503 at once, and a hold longer than the maximum wait lets requests through', async () => {
    await L().hold('beta', true);
    const order: string[] = [];
    const waiting = [1, 2, 3].map((i) => get('beta.test', `/w${i}`).then((a) => { order.push(`w${i} ${a.status}`); return a; }));
    await until('three requests wait', async () => ((await statOf('beta'))?.hold.waiting === 3 ? true : undefined));
    const over = await get('beta.test', '/w4');
    order.push(`w4 ${over.status}`);
    assert.equal(over.status, 503);
    // Never released: the maximum wait lets them go on while the hold is still on.
    const answers = await Promise.all(waiting);
    assert.deepEqual(answers.map((a) => a.body), ['b1', 'b1', 'b1']);
    assert.equal((await statOf('beta'))?.hold.on, true);
    assert.equal(order[0], 'w4 503');
    await L().hold('beta', false);
  });

  it('routes TCP by port, holds TCP connections too, and refuses ports without a route', async () => {
    routes.set('tcpa', { service: 'tcpa', mode: 'tcp', tcpPort: tcpFirst + 1, balance: 'roundrobin', health: { kind: 'tcp' }, servers: [srv('t1'), srv('t2')] });
    assert.equal((await apply()).reloaded, false);
    const got: string[] = [];
    for (let i = 0; i < 4; i++) got.push((await tcpRead(tcpFirst + 1)).trim());
    assert.deepEqual(count(got), { t1: 2, t2: 2 });
    assert.equal(await tcpRead(tcpFirst + 2), '', 'a port without a route must close at once');
    routes.set('tcpb', { service: 'tcpb', mode: 'tcp', tcpPort: tcpFirst + 2, balance: 'leastconn', servers: [srv('t3')] });
    await apply();
    assert.equal((await tcpRead(tcpFirst + 2)).trim(), 't3');

    await L().hold('tcpa', true);
    const order: string[] = [];
    const held = tcpRead(tcpFirst + 1).then((d) => { order.push(`tcpa got ${d.trim()}`); return d; });
    await until('the connection waits at HAProxy', async () => ((await statOf('tcpa'))?.hold.waiting === 1 ? true : undefined));
    assert.equal((await tcpRead(tcpFirst + 2)).trim(), 't3', 'another TCP service is not held');
    order.push('release');
    await L().hold('tcpa', false);
    assert.match((await held).trim(), /^t[12]$/);
    assert.equal(order[0], 'release');
  });

  it('refuses bad input with clear codes and changes nothing', async () => {
    const before = JSON.stringify(L().snapshot());
    const base = [...routes.values()];
    const cases: [LbRoute[], string, RegExp][] = [
      [[...base, { service: 'clash', mode: 'http', hosts: ['beta.test'], balance: 'roundrobin', servers: [] }], 'FERRY_ERR_HOST_CLASH', /"clash" and "beta" both claim host beta.test/],
      [[...base, { service: 'clash', mode: 'tcp', tcpPort: tcpFirst + 1, balance: 'roundrobin', servers: [] }], 'FERRY_ERR_TCP_PORT_CLASH', /both claim TCP port/],
      [[...base, { service: 'far', mode: 'tcp', tcpPort: tcpFirst + 100, balance: 'roundrobin', servers: [] }], 'FERRY_ERR_PORT_OUT_OF_RANGE', new RegExp(`outside the entry point range ${tcpFirst}-${tcpFirst + 7}`)],
      [[...base, { service: 'odd', mode: 'tcp', tcpPort: tcpFirst + 3, hosts: ['x.test'], balance: 'roundrobin', servers: [] }], 'FERRY_ERR_BAD_ROUTE', /hosts and pathPrefix are for mode http/],
      [[...base, { service: 'odd', mode: 'http', hosts: ['x.test'], balance: 'roundrobin', servers: [{ name: 'x', address: 'localhost', port: 1, state: 'ready' }] }], 'FERRY_ERR_BAD_ROUTE', /not an IP address/],
    ];
    for (const [desired, code, message] of cases) {
      await assert.rejects(L().apply(desired), (e: Error & { code?: string }) => {
        assert.equal(e.code, code);
        assert.match(e.message, message);
        return true;
      });
    }
    await assert.rejects(L().hold('ghost', true), { code: 'FERRY_ERR_SERVICE_NOT_FOUND' });
    await assert.rejects(L().drain('beta', 'ghost', 10), { code: 'FERRY_ERR_SERVER_NOT_FOUND' });
    assert.equal(JSON.stringify(L().snapshot()), before);
    assert.equal((await get('beta.test')).body, 'b1');
  });

  it('reports a missing haproxy, a failed config check and a failed start, leaving no files', async () => {
    const stateDir = join(dir, 'bad');
    const cases: [Partial<Parameters<typeof Lb.start>[0]>, string, RegExp][] = [
      [{ haproxy: join(dir, 'no-such-haproxy') }, 'FERRY_ERR_HAPROXY_MISSING', /haproxy not found/],
      [{ haproxy: '/bin/false' }, 'FERRY_ERR_CONFIG_CHECK_FAILED', /haproxy -c rejected the generated configuration/],
      [{}, 'FERRY_ERR_HAPROXY_START_FAILED', /cannot bind socket/],
    ];
    for (const [extra, code, message] of cases) {
      await assert.rejects(Lb.start({ stateDir, http: { address: '127.0.0.1', port: httpPort }, ...extra }), (e: Error & { code?: string }) => {
        assert.equal(e.code, code);
        assert.match(e.message, message);
        return true;
      });
      assert.deepEqual(processesMatching(stateDir), []);
      assert.throws(() => readFileSync(join(stateDir, 'haproxy.cfg')), { code: 'ENOENT' });
    }
  });

  it('grows an exhausted pool with one hitless reload, says so, and keeps serving', async () => {
    const p0 = await L().processInfo();
    assert.deepEqual({ master: p0.masterPid, worker: p0.workerPid, reloads: p0.masterReloads }, { ...startPids, reloads: 0 }, 'HAProxy was reloaded before the pool ran out');
    // Two backends per group: a third plain round-robin HTTP service with TCP checks needs a third.
    routes.set('gamma', { service: 'gamma', mode: 'http', hosts: ['gamma.test'], balance: 'roundrobin', servers: [srv('a3')] });
    const load = clientLoad('alpha.test');
    let r;
    try {
      await until('the clients run', () => (load.answers.length > 50 ? true : undefined));
      r = await apply();
      const after = load.seq();
      await until('answers after the reload', () => (load.answers.filter((a) => a.seq >= after).length > 50 ? true : undefined));
    } finally {
      await load.stop();
    }
    assert.deepEqual(load.failures, [], `requests failed across the reload: ${load.failures.slice(0, 5).join('; ')}`);
    assert.equal(r.reloaded, true);
    assert.match(r.reason ?? '', /pool too small: group http_rr_plain_tcpchk needs 3 backends, has 2/);
    const p1 = await L().processInfo();
    assert.equal(p1.masterPid, startPids.master);
    assert.equal(p1.masterReloads, 1);
    assert.notEqual(p1.workerPid, startPids.worker);
    assert.equal((await get('gamma.test')).body, 'a3');
    assert.deepEqual(count(await bodies('alpha.test', 4)), { a1: 2, a2: 2 });
    assert.equal((await statOf('slow'))?.servers[0]?.name, 'd2');
    assert.equal((await tcpRead(tcpFirst + 2)).trim(), 't3');
    assert.ok(events.some((e) => e.type === 'reloaded' && /pool too small/.test(e.reason)));
  });
});
