/**
 * The dashboard, in a real browser on a real cluster: Debian's chromium (driven by playwright-core,
 * headless) opens the page the manager serves, signed in by the `#token=` link `ferry dashboard`
 * prints; it sees both simulated hosts, charts the `demo` service's stream through the entry point,
 * and live-migrates the replica by clicking (Verify & Migrate) while the chart keeps receiving
 * events whose `seq` never goes back; then drains that host by clicking (the replica moves back) and
 * undrains it. Screenshots (before, during, after, drained) go to test-artifacts/.
 * First, in-process: the files are served without a token (and a clear 503 without a build), every
 * /v1 call still needs one, and the entry point's announced address drives the stream route.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { chromium, type Browser, type Page } from 'playwright-core';
import { openStore, type Store } from '../src/store/index.ts';
import { keys, type ContainerView, type Migration } from '../src/model/index.ts';
import { buildApi, NodeLeases } from '../src/api/index.ts';
import { dashboardRoutes, DASHBOARD_DIR } from '../src/api/routes/dashboard.ts';
import { useCluster } from './support/cluster.ts';
import { ROOT } from './support/ferry.ts';
import { IN_CI, skipUnlessReady } from './support/prereq.ts';
import { MIGRATION_TOOLS } from './support/two-nodes.ts';
import { until } from './support/wait.ts';

const CHROMIUM = '/usr/bin/chromium';
const TOOLS = [...MIGRATION_TOOLS, 'haproxy', CHROMIUM];
const BUILT = existsSync(join(DASHBOARD_DIR, 'index.html'));
/** Outside CI a missing build skips with the reason; under CI it fails (in `before`). */
const NO_BUILD = !BUILT && !IN_CI ? `the dashboard is not built (${DASHBOARD_DIR}): run ./scripts/setup` : false;

describe('the dashboard files and the stream route (in-process API)', () => {
  const TOKEN = 'dash-token';
  let store: Store;
  let app: Awaited<ReturnType<typeof buildApi>>;
  before(async () => {
    store = await openStore('memory:');
    app = await buildApi({ store, token: TOKEN, agentToken: TOKEN, version: 'test', leases: new NodeLeases(store, 10), spoolDir: tmpdir(), nodeLeaseTtl: 10 });
  });
  after(async () => { await app?.close(); await store?.close(); });

  it('serves the page without a token, leads / there, and keeps /v1 behind the token', async (t) => {
    if (!BUILT) {
      if (IN_CI) assert.fail(`the dashboard is not built (${DASHBOARD_DIR}): scripts/setup builds it`);
      return t.skip('the dashboard is not built: run ./scripts/setup');
    }
    const root = await app.inject({ method: 'GET', url: '/' });
    assert.equal(root.statusCode, 302);
    assert.equal(root.headers.location, '/ui/');
    const page = await app.inject({ method: 'GET', url: '/ui/' });
    assert.equal(page.statusCode, 200);
    assert.match(String(page.headers['content-type']), /text\/html/);
    const script = /src="(\/ui\/assets\/[^"]+\.js)"/.exec(page.body)?.[1];
    assert.ok(script, 'the page loads its bundle from /ui/assets/');
    assert.equal((await app.inject({ method: 'GET', url: script })).statusCode, 200);
    for (const sneaky of ['/ui/..%2F..%2Fpackage.json', '/ui/%2e%2e/%2e%2e/package.json', '/ui/assets/..%2F..%2F..%2Fpackage.json']) {
      const r = await app.inject({ method: 'GET', url: sneaky });
      assert.ok(r.statusCode >= 400 && !r.body.includes('"name": "ferry"'), `nothing outside the build: ${sneaky} → ${r.statusCode}`);
    }
    assert.equal((await app.inject({ method: 'GET', url: '/v1/nodes' })).statusCode, 401, '/v1 still needs the token');
    assert.equal((await app.inject({ method: 'POST', url: '/ui/' })).statusCode, 401, 'only GET of the files goes without a token');
  });

  it('answers a clear 503 page when the build is missing', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'ferry-dash-'));
    const bare = Fastify();
    try {
      await bare.register(dashboardRoutes({ dir: empty }));
      const r = await bare.inject({ method: 'GET', url: '/ui/' });
      assert.equal(r.statusCode, 503);
      assert.match(r.body, /Run <code>\.\/scripts\/setup<\/code>/);
      assert.match(r.body, /FERRY_ERR_DASHBOARD_NOT_BUILT/);
    } finally {
      await bare.close();
      await rm(empty, { recursive: true, force: true });
    }
  });

  it('records the HTTP address an entry point announces; the stream route needs one', async () => {
    const auth = { authorization: `Bearer ${TOKEN}` };
    // Old entry points send no address: still a plain lease renewal.
    assert.equal((await app.inject({ method: 'POST', url: '/v1/entrypoints/old/heartbeat', headers: auth })).statusCode, 200);
    assert.equal((await store.get<{ http?: string }>(keys.entryPoint('old')))?.value.http, undefined);
    const s = await app.inject({ method: 'GET', url: '/v1/services/ghost/stream?path=/stream', headers: auth });
    assert.equal(s.statusCode, 404);
    assert.equal(s.json<{ code: string }>().code, 'FERRY_ERR_SERVICE_NOT_FOUND');
    await store.create(keys.service('demo'), { metadata: { name: 'demo' }, spec: { http: { hosts: ['demo.local'], pathPrefix: '/' } } });
    const none = await app.inject({ method: 'GET', url: '/v1/services/demo/stream?path=/stream', headers: auth });
    assert.equal(none.statusCode, 503);
    assert.equal(none.json<{ code: string }>().code, 'FERRY_ERR_NO_ENTRY_POINT');
    const hb = await app.inject({ method: 'POST', url: '/v1/entrypoints/lb/heartbeat?http=http://127.0.0.1:1', headers: auth });
    assert.equal(hb.statusCode, 200);
    assert.equal((await store.get<{ http?: string }>(keys.entryPoint('lb')))?.value.http, 'http://127.0.0.1:1');
    // Port 1 answers nothing: the route says which entry point failed, as a 502.
    const down = await app.inject({ method: 'GET', url: '/v1/services/demo/stream?path=/stream', headers: auth });
    assert.equal(down.statusCode, 502);
    assert.equal(down.json<{ code: string }>().code, 'FERRY_ERR_ENTRY_POINT_UNREACHABLE');
  });
});

describe('the dashboard in a real browser on a simulated cluster', { skip: skipUnlessReady(TOOLS) || NO_BUILD }, () => {
  let browser: Browser | undefined;
  // Registered before the cluster's hooks, so the browser is gone before the cluster is torn down.
  after(async () => { await browser?.close(); });
  const h = useCluster({ nodes: 2, tools: TOOLS, lb: true });
  let page: Page;
  let shots: string;
  const shot = async (name: string): Promise<void> => { await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true }); };
  /** What the stream panel received so far (see web/src/stream.tsx). */
  const streamLog = (): Promise<{ seqs: number[]; arrivals: number[]; reconnects: number; maxGapMs: number } | undefined> =>
    page.evaluate(() => {
      const l = (globalThis as unknown as { ferryStream?: { seqs: number[]; arrivals: number[]; reconnects: number; maxGapMs: number } }).ferryStream;
      return l ? { seqs: [...l.seqs], arrivals: [...l.arrivals], reconnects: l.reconnects, maxGapMs: l.maxGapMs } : undefined;
    });
  const received = async (): Promise<number> => (await streamLog())?.seqs.length ?? 0;

  before(async () => {
    if (!BUILT) assert.fail(`the dashboard is not built (${DASHBOARD_DIR}): scripts/setup builds it`);
    shots = join(ROOT, 'test-artifacts', `dashboard-${h.c.id}`);
    await mkdir(shots, { recursive: true });
    browser = await chromium.launch({
      executablePath: CHROMIUM, headless: true,
      // Nothing but the manager: no proxy, no background traffic of the browser's own.
      args: ['--no-sandbox', '--no-proxy-server', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-default-apps', '--no-first-run', '--disable-domain-reliability'],
    });
    page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  });

  it('opens signed in with the token link and shows both hosts', async () => {
    await h.c.ok(['service', 'create', 'demo', '--image', 'sample', '--replicas', '1', '--http-host', 'demo.local', '--wait']);
    const { url } = await h.c.json<{ url: string }>(['dashboard']);
    assert.equal(url, `${h.c.managerUrl}/ui/#token=${encodeURIComponent(h.c.token)}`);
    await page.goto(url);
    for (const x of h.c.hosts) {
      await page.locator(`[data-testid="host"][data-node="${x.node}"][data-state="Ready"]`).waitFor({ timeout: 30_000 });
    }
    assert.equal(await page.locator('[data-testid="host"]').count(), 2);
    assert.ok(!(await page.evaluate(() => (globalThis as unknown as { location: { hash: string } }).location.hash)).includes('token'), 'the token left the address bar');
  });

  it('migrates the replica by clicking while the stream chart keeps flowing, never going back', async () => {
    const [replica] = (await h.c.client.services.get('demo')).replicas;
    assert.ok(replica?.node, 'the replica is placed');
    const from = replica.node;
    const to = h.c.hosts.find((x) => x.node !== from)!.node;
    await page.locator(`[data-testid="container"][data-name="${replica.name}"] [data-testid="stats-${replica.name}"]`).waitFor();

    await page.locator('[data-testid="stream-service"]').selectOption('demo');
    await page.locator('[data-testid="stream-start"]').click();
    await until('the chart to receive 40 events', async () => ((await received()) >= 40 ? true : undefined), 60_000);
    await until('the CPU/memory chart to have samples', async () =>
      (Number(await page.locator(`[data-testid="stats-${replica.name}"]`).getAttribute('data-samples')) >= 3 ? true : undefined));
    await shot('1-before');

    await page.locator(`[data-testid="migrate-open-${replica.name}"]`).click();
    const panel = page.locator(`[data-testid="migrate-panel"][data-container="${replica.name}"]`);
    await panel.waitFor();
    assert.equal(await panel.locator('[data-testid="migratable"]').getAttribute('data-ok'), 'yes');
    await panel.locator(`[data-testid="lm-${to}"]`).waitFor({ timeout: 60_000 });
    await panel.locator('[data-testid="migrate-target"]').selectOption(to);
    const beforeClick = await received();
    const clickedAt = Date.now();
    await panel.locator('[data-testid="verify-migrate"]').click();

    await panel.locator('[data-testid="migration-checks"][data-passed="yes"]').waitFor({ timeout: 60_000 });
    const phases: string[] = [];
    let during = false;
    const phase = panel.locator('[data-testid="migration-phase"]');
    const last = await until('the migration shown as ended', async () => {
      const p = await phase.getAttribute('data-phase', { timeout: 1000 }).catch(() => null);
      if (p && phases[phases.length - 1] !== p) phases.push(p);
      if (p && !during && p !== 'Succeeded') { during = true; await shot('2-during'); }
      return p === 'Succeeded' || p === 'RolledBack' || p === 'Failed' ? p : undefined;
    }, 180_000);
    const endedAt = Date.now();
    const id = await panel.locator('[data-testid="migration"]').getAttribute('data-id');
    const m = await h.c.client.migrations.get(id!);
    assert.equal(last, 'Succeeded', `the dashboard showed ${phases.join(' → ')}; ${m.status.error ?? ''}`);
    assert.ok(phases.length >= 2, `the phase shown advanced: ${phases.join(' → ')}`);
    assert.deepEqual(m.status.history.map((x) => x.phase).slice(-1), ['Succeeded']);
    assert.deepEqual([m.spec.from, m.spec.to, m.spec.checkOnly], [from, to, false]);
    const report = panel.locator('[data-testid="migration-report"]');
    assert.equal(Number(await report.getAttribute('data-freeze-ms')), m.status.freezeMs);
    assert.equal(Number(await report.getAttribute('data-bytes')), m.status.bytes);
    await page.locator('[data-testid="notification"][data-kind="ok"]', { hasText: replica.name }).waitFor();

    const afterEnd = await received();
    await until('40 more events after the migration', async () => ((await received()) >= afterEnd + 40 ? true : undefined), 60_000);
    await shot('3-after');

    const log = (await streamLog())!;
    const { seqs, arrivals } = log;
    assert.ok(beforeClick >= 40, `events before the click: ${beforeClick}`);
    assert.ok(arrivals.filter((a) => a < clickedAt).length >= 40, 'the chart received events before the migration');
    assert.ok(arrivals.filter((a) => a > endedAt).length >= 40, 'the chart received events after it');
    // seq is the process's own counter: through the move it only ever goes up (no reset, no replay).
    for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i]! > seqs[i - 1]!, `seq went from ${seqs[i - 1]} to ${seqs[i]} at event ${i}`);
    assert.equal(await page.locator('[data-testid="stream-stats"]').getAttribute('data-backwards'), '0');
    process.stdout.write(`# dashboard: ${seqs.length} events, seq ${seqs[0]}..${seqs[seqs.length - 1]}, ${seqs[seqs.length - 1]! - seqs[0]! + 1 - seqs.length} not received, `
      + `${log.reconnects} reconnect(s), longest gap ${log.maxGapMs} ms by the app's clock; phases shown ${phases.join(' → ')}; freeze ${m.status.freezeMs} ms; screenshots in ${shots}\n`);

    const v: ContainerView = await h.c.client.containers.get(replica.name);
    assert.equal(v.container.placement?.node, to, 'placed on the other host');
    assert.equal(v.status?.node, to, 'runs on the other host');
    assert.equal(v.status?.phase, 'running');
    await page.locator(`[data-testid="host"][data-node="${to}"] [data-testid="container"][data-name="${replica.name}"]`).waitFor();
  });

  it('drains the replica host by clicking (the replica moves back), then undrains it', async () => {
    const [replica] = (await h.c.client.services.get('demo')).replicas;
    const from = replica!.node!;
    const to = h.c.hosts.find((x) => x.node !== from)!.node;
    await page.locator('[data-testid="migrate-close"]').click();
    const host = page.locator(`[data-testid="host"][data-node="${from}"]`);
    await host.locator(`[data-testid="drain-${from}"]`).click();
    await page.locator('[data-testid="notification"][data-kind="ok"]', { hasText: `${from} drained: 1 of 1` }).waitFor({ timeout: 180_000 });
    await page.locator(`[data-testid="host"][data-node="${to}"] [data-testid="container"][data-name="${replica!.name}"]`).waitFor();
    assert.equal(await host.getAttribute('data-unschedulable'), 'yes');
    assert.equal((await h.c.client.nodes.get(from)).node.spec.unschedulable, true, 'the drained host is cordoned');
    assert.equal((await h.c.client.containers.get(replica!.name)).status?.node, to);
    await shot('4-drained');
    await host.locator(`[data-testid="undrain-${from}"]`).click();
    await page.locator(`[data-testid="host"][data-node="${from}"][data-unschedulable="no"]`).waitFor();
    assert.equal((await h.c.client.nodes.get(from)).node.spec.unschedulable, false, 'undrained');
    // Two moves now, one stream: still only ever going up.
    const seqs = (await streamLog())!.seqs;
    for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i]! > seqs[i - 1]!, `seq went from ${seqs[i - 1]} to ${seqs[i]} at event ${i}`);
  });

  it('stops the stream and leaves no migration running', async () => {
    await page.locator('[data-testid="stream-stop"]').click();
    const active = (await h.c.client.migrations.list()).filter((m: Migration) => !['Succeeded', 'RolledBack', 'Failed'].includes(m.status.phase));
    assert.deepEqual(active.map((m) => m.metadata.name), []);
    await h.c.ok(['service', 'rm', 'demo', '--wait']);
  });
});
