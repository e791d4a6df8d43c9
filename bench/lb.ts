/**
 * bench/lb: Ferry's entry point (`ferry up --nodes 2` starts it on host 1) in one run with its own
 * cluster. First against a hand-written HAProxy for the same three replicas (same addresses, health
 * check, roundrobin; `haproxy -f` in the same namespace on another port): wrk from host 2, the two
 * alternating, req/s and p99 with the ratio Ferry/hand. Then under continuous load through the entry
 * point: live migrations of the replicas one at a time, scale 3 → 1, migrations of the only replica
 * (requests held at the entry point through each freeze), scale 1 → 5, a rolling update; failed
 * requests per phase, p99 overall and during the migrations against the migrations' freeze. Prints
 * the tables with targets and the raw figures; `-o json` prints all of it as JSON. Progress on stderr.
 *
 *   node --import tsx bench/lb.ts [--seconds 10] [--reps 3] [--connections 32] [--migrations 20] [--held-migrations 6]
 *     [--strategy auto] [--load-connections 16] [--pace-ms 10] [--settle 3] [-o json]
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { getOnce } from '../test/support/http-load.ts';
import { stopAll } from './network/netns-process.ts';
import { onInterrupt } from './support/interrupt.ts';
import { runChurn } from './lb/churn.ts';
import { leftoversAfter, settled, startCluster, teardownCluster, type ClusterTrace, type SimNode } from './lb/cluster.ts';
import { renderHandConfig, startHandHaproxy } from './lb/hand-haproxy.ts';
import { ChurnLoad, figures } from './lb/load.ts';
import { renderText, summarize, type LbResult, type Series } from './lb/report.ts';
import { wrkArgv, wrkOnce, writeWrkScript, type WrkOptions } from './lb/wrk.ts';
import type { ServiceView } from '../src/model/index.ts';

const SERVICE = 'web';
const HOST = 'web.local';
const REPLICAS = 3;
const HAND_PORT = 8080;

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    reps: { type: 'string', default: '3' },
    connections: { type: 'string', default: '32' },
    migrations: { type: 'string', default: '20' },
    'held-migrations': { type: 'string', default: '6' },
    strategy: { type: 'string', default: 'auto' },
    'load-connections': { type: 'string', default: '16' },
    'pace-ms': { type: 'string', default: '10' },
    settle: { type: 'string', default: '3' },
    o: { type: 'string', short: 'o', default: 'table' },
  },
});
const options = {
  seconds: Number(values.seconds), reps: Number(values.reps), connections: Number(values.connections), migrations: Number(values.migrations),
  heldMigrations: Number(values['held-migrations']),
  strategy: values.strategy, loadConnections: Number(values['load-connections']), paceMs: Number(values['pace-ms']), settleMs: Number(values.settle) * 1000,
};
const count = (v: number, min: number): boolean => Number.isInteger(v) && v >= min;
const usage = [
  !(count(options.seconds, 1) && options.seconds <= 600) && '--seconds takes whole seconds per wrk run, 1..600',
  !count(options.reps, 1) && '--reps takes a count ≥ 1',
  !(count(options.connections, 1) && options.connections <= 10_000) && '--connections takes wrk\'s connection count, 1..10000',
  !count(options.migrations, 0) && '--migrations takes a count ≥ 0',
  !count(options.heldMigrations, 0) && '--held-migrations takes a count ≥ 0',
  !['auto', 'stop-copy', 'pre-copy', 'post-copy'].includes(options.strategy) && '--strategy takes auto, stop-copy, pre-copy or post-copy',
  !(count(options.loadConnections, 1) && options.loadConnections <= 1000) && '--load-connections takes a count, 1..1000',
  !count(options.paceMs, 0) && '--pace-ms takes milliseconds ≥ 0',
  !(options.settleMs >= 0 && options.settleMs <= 600_000) && '--settle takes seconds, 0..600',
  !['table', 'json'].includes(values.o) && '-o takes table or json',
].filter(Boolean);
if (usage.length > 0) {
  console.error(`bench/lb: ${usage.join('; ')}`);
  process.exit(2);
}

/** Progress on stderr, so `-o json` keeps stdout clean. */
const note = (s: string): void => { process.stderr.write(`# ${s}\n`); };
const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const firstLine = (argv: string[]): string => spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' }).stdout?.split('\n')[0]?.trim() ?? '';

const trace: ClusterTrace = {};
const interrupt = onInterrupt(note, stopAll);
/** Throws once a signal asked the run to stop, so it goes straight to the teardown. */
const checkpoint = (): void => interrupt.checkpoint();

/** Waits until `address:port` has answered `Host: web.local` from every replica in `names`. */
async function answersFrom(what: string, address: string, port: number, names: string[], timeoutMs = 60_000): Promise<void> {
  const seen = new Set<string>();
  for (const t0 = Date.now(); Date.now() - t0 < timeoutMs; await sleep(100)) {
    checkpoint();
    const r = await getOnce(address, port, HOST, '/', 2000).catch(() => undefined);
    if (r?.status === 200) seen.add((JSON.parse(r.body) as { hostname: string }).hostname);
    if (names.every((n) => seen.has(n))) return;
  }
  throw new Error(`${what} at ${address}:${port} did not answer from every replica within ${timeoutMs} ms (saw ${[...seen].join(', ') || 'none'} of ${names.join(', ')})`);
}

/** Runs wrk once, adding its result to `s`, or its error message. */
async function measure(s: Series, rep: number, label: string, o: WrkOptions): Promise<void> {
  checkpoint();
  const load = loadavg()[0]!;
  try {
    const r = await wrkOnce(o);
    // A Ctrl-C reaches wrk too, which then reports a cut-short run: not a figure.
    checkpoint();
    s.runs.push({ ...r, rep, load });
    note(`${label}: ${r.reqPerSec.toFixed(0)} req/s, p99 ${(r.latencyUs.p99 / 1000).toFixed(2)} ms (load ${load.toFixed(2)})`);
  } catch (e) {
    checkpoint();
    s.errors.push(message(e));
    note(`${label}: FAILED ${message(e)}`);
  }
}

const cpuList = cpus();
const t0 = Date.now();
const result: LbResult = {
  machine: {
    cores: cpuList.length, cpu: cpuList[0]?.model.trim() ?? 'unknown CPU', kernel: release(), node: process.version,
    haproxy: firstLine(['haproxy', '-v']).replace(/^HAProxy version (\S+).*/, 'HAProxy $1'), wrk: firstLine(['wrk', '-v']).replace(/ \[.*/, ''),
  },
  loadavg: { start: loadavg() }, startedAt: new Date().toISOString(), options, backends: [],
  throughput: { ferry: { runs: [], errors: [] }, hand: { runs: [], errors: [] } },
  churn: { phases: [], steps: [], migrations: [], errors: [] },
};
let failure: string | undefined;
let dir: string | undefined;
let home: string | undefined;
let left: string[];
try {
  dir = await mkdtemp(join(tmpdir(), 'ferry-bench-lb-run-'));
  note('ferry up --nodes 2');
  const c = await startCluster(trace);
  home = c.home;
  checkpoint();
  const [h1, h2] = c.nodes as [SimNode, SimNode];
  const client = `/run/netns/${h2.netns}`;
  result.where = {
    ferry: `http://${h1.underlayIp}:80`, hand: `http://${h1.underlayIp}:${HAND_PORT}`, lbNetns: h1.netns, clientNetns: h2.netns,
    underlay: `${c.simulation.subnet} on ${c.simulation.bridge}`,
  };
  note(`service create ${SERVICE} --replicas ${REPLICAS}`);
  await c.ok(['service', 'create', SERVICE, '--image', 'sample', '--replicas', String(REPLICAS), '--http-host', HOST, '--health', 'http:/', '--drain', '2s', '--wait']);
  const replicas = await settled(c, SERVICE, REPLICAS);
  const port = (await c.json<ServiceView>(['service', 'inspect', SERVICE])).service.spec.port;
  result.backends = replicas.map((r) => ({ name: r.name, ip: r.ip!, port }));
  const names = replicas.map((r) => r.name);
  await answersFrom('Ferry\'s entry point', h1.underlayIp, 80, names);

  note(`hand-written HAProxy on ${h1.underlayIp}:${HAND_PORT} in ${h1.netns}`);
  const hand = await startHandHaproxy(dir, h1.netns, renderHandConfig({ address: h1.underlayIp, port: HAND_PORT, host: HOST, backends: result.backends }));
  result.handConfig = hand.config;
  await answersFrom('the hand-written HAProxy', h1.underlayIp, HAND_PORT, names);

  const script = await writeWrkScript(dir);
  const run = (url: string, seconds: number): WrkOptions => ({ netnsPath: client, url, host: HOST, connections: options.connections, seconds, script });
  const urls = { ferry: `http://${h1.underlayIp}/`, hand: `http://${h1.underlayIp}:${HAND_PORT}/` };
  result.wrkArgv = wrkArgv(run(urls.ferry, options.seconds));
  // Warm-up, unrecorded: connections, neighbour entries, HAProxy's idle server connections.
  for (const k of ['ferry', 'hand'] as const) await wrkOnce(run(urls[k], 2)).catch((e: unknown) => note(`warm-up ${k}: ${message(e)}`));
  for (let rep = 0; rep < options.reps; rep++) {
    // The order flips every rep, so a drift in the machine's load does not favour one side.
    for (const k of rep % 2 === 0 ? (['ferry', 'hand'] as const) : (['hand', 'ferry'] as const)) {
      await measure(result.throughput[k], rep + 1, `wrk ${k} rep ${rep + 1}`, run(urls[k], options.seconds));
    }
  }
  await hand.process.stop();
  checkpoint();

  note(`continuous load from ${h2.netns}: ${options.loadConnections} connections, ${options.paceMs} ms pace`);
  const load = await ChurnLoad.start({ netnsPath: client, dir, address: h1.underlayIp, port: 80, host: HOST, connections: options.loadConnections, paceMs: options.paceMs });
  result.churn.loadArgv = [...load.argv];
  let steps;
  try {
    await sleep(1000);
    steps = await runChurn(c, load, { service: SERVICE, replicas: REPLICAS, migrations: options.migrations, heldMigrations: options.heldMigrations, strategy: options.strategy, settleMs: options.settleMs, note, checkpoint });
  } finally {
    const { samples, summary } = await load.stop();
    result.churn.loadSummary = summary;
    result.churn.phases = load.phases.map((p) => figures(p.name, samples, p.startMs, p.endMs, p.load));
    const first = load.phases[0];
    const last = load.phases.at(-1);
    if (first && last) result.churn.overall = figures('all phases', samples, first.startMs, last.endMs, [first.load[0], last.load[1]]);
  }
  result.churn.steps = steps.steps;
  result.churn.migrations = steps.migrations;
  result.churn.errors = steps.steps.filter((s) => s.error).map((s) => `${s.name}: ${s.error}`);
} catch (e) {
  failure = e instanceof Error ? (e.stack ?? e.message) : String(e);
} finally {
  note('teardown: tools, ferry down, temp dir');
  await stopAll();
  left = await teardownCluster(trace);
  if (dir) await rm(dir, { recursive: true, force: true });
  // Checked afterwards, the way a person would: ip netns, ip -br link, ps.
  left.push(...leftoversAfter(trace.simId, [home, dir].filter((x): x is string => x !== undefined)));
  if (left.length > 0) console.error(`cleanup found leftovers: ${left.join('; ')}`);
  else note('nothing left behind (ip netns, ip -br link, processes, temp dirs checked)');
}
result.loadavg.end = loadavg();
result.wallSeconds = (Date.now() - t0) / 1000;
const summary = summarize(result);
if (failure) {
  console.error(`bench/lb stopped: ${failure}`);
  process.exitCode = interrupt.signal() ? 130 : 1;
}
if (values.o === 'json') console.log(JSON.stringify({ ...result, summary, ...(failure ? { failure } : {}), leftovers: left }, null, 2));
else console.log(`${renderText(result, summary, failure?.split('\n')[0])}\nleftovers after the teardown: ${left.length > 0 ? left.join('; ') : 'none'}`);
