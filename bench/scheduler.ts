/**
 * bench/scheduler: placements per second and decision latency of Ferry's scheduler on simulated
 * clusters (1,000 and 5,000 nodes, 100,000 containers already placed), a stream of new placements
 * committed one by one through `Scheduler.place()`, against the scheduler's own full scan (every
 * node filtered and scored) on the same cluster and stream, with ratios; the quoted figures of
 * Nomad and kube-scheduler for scale, and the target with pass/fail. Pure CPU: no cluster, no I/O.
 * Prints a table and the raw figures; `-o json` prints all of it as JSON. Progress on stderr.
 *
 *   node --import tsx bench/scheduler.ts [--nodes 1000,5000] [--containers 100000] [--requests 20000]
 *     [--full-requests 20000] [--services 5000] [--score-limit 100] [--seed 1] [-o json]
 */
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { DEFAULT_SCORE_LIMIT, Scheduler, type NodeSnapshot, type PlacementRequest, type SchedulerOptions } from '../src/scheduler/index.ts';
import { buildCluster, requestStream } from './scheduler/cluster.ts';
import { latency, renderText, type ClusterRun, type ModeRun, type SchedulerResult } from './scheduler/report.ts';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '1000,5000' },
    containers: { type: 'string', default: '100000' },
    requests: { type: 'string', default: '20000' },
    'full-requests': { type: 'string', default: '20000' },
    services: { type: 'string', default: '5000' },
    'score-limit': { type: 'string', default: String(DEFAULT_SCORE_LIMIT) },
    seed: { type: 'string', default: '1' },
    o: { type: 'string', short: 'o', default: 'table' },
  },
});
const nodeCounts = values.nodes.split(',').map(Number);
const containers = Number(values.containers);
const requests = Number(values.requests);
const fullRequests = Number(values['full-requests']);
const serviceCount = Number(values.services);
const scoreLimit = Number(values['score-limit']);
const seed = Number(values.seed);
const count = (x: number, min: number): boolean => Number.isInteger(x) && x >= min;
const usage = [
  !nodeCounts.every((n) => count(n, 1)) && '--nodes takes node counts ≥ 1, comma-separated',
  !count(containers, 0) && '--containers takes a count ≥ 0',
  !count(requests, 1) && '--requests takes a count ≥ 1',
  !count(fullRequests, 0) && '--full-requests takes a count ≥ 0 (0 skips the full scan)',
  !count(serviceCount, 1) && '--services takes a count ≥ 1',
  !count(scoreLimit, 1) && '--score-limit takes a count ≥ 1',
  !Number.isInteger(seed) && '--seed takes an integer',
  !['table', 'json'].includes(values.o) && '-o takes table or json',
].filter(Boolean);
if (usage.length > 0) {
  console.error(`bench/scheduler: ${usage.join('; ')}`);
  process.exit(2);
}

/** Progress on stderr, so `-o json` keeps stdout clean. */
const note = (s: string): void => { process.stderr.write(`# ${s}\n`); };

interface Mode {
  readonly mode: string;
  readonly description: string;
  readonly options: SchedulerOptions;
  /** Word every verdict of every decision (what a caller that shows full explanations pays). */
  readonly readVerdicts: boolean;
}

const MODES: readonly Mode[] = [
  { mode: 'sampled', description: `Scheduler.place(): filters walk from a rotating cursor until ${scoreLimit} feasible nodes, those are scored; the reason line is read`, options: { scoreLimit }, readVerdicts: false },
  { mode: 'sampled+verdicts', description: 'the same, and every examined node\'s verdict worded (decision.verdicts read)', options: { scoreLimit }, readVerdicts: true },
  { mode: 'full-scan', description: 'the named peer: the same scheduler with scoreLimit \'all\', every node filtered and scored (what place() does)', options: { scoreLimit: 'all' }, readVerdicts: false },
];

/** Times `stream` through a fresh scheduler on `nodes`, committing each placement. */
function timeStream(nodes: readonly NodeSnapshot[], stream: readonly PlacementRequest[], m: Mode): ModeRun {
  const s = new Scheduler(nodes, m.options);
  const lat: number[] = new Array<number>(stream.length);
  let placed = 0;
  let scoreSum = 0;
  let examined = 0;
  let words = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let k = 0; k < stream.length; k++) {
    const a = performance.now();
    const d = s.place(stream[k]!);
    if (m.readVerdicts) words += d.verdicts.length;
    lat[k] = performance.now() - a;
    examined += d.examined;
    if (d.ok) {
      placed++;
      scoreSum += d.score;
    }
  }
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const cpuMs = (cpu.user + cpu.system) / 1000;
  if (m.readVerdicts && words === 0) throw new Error('no verdict was worded');
  return {
    mode: m.mode, description: m.description, requests: stream.length, placed, unplaced: stream.length - placed, wallMs,
    placementsPerSec: (stream.length / wallMs) * 1000, cpuMs, placementsPerCpuSec: (stream.length / cpuMs) * 1000, latencyUs: latency(lat),
    meanWinnerScore: placed > 0 ? scoreSum / placed : 0, meanExamined: examined / stream.length,
  };
}

const cpuList = cpus();
const result: SchedulerResult = {
  machine: { cores: cpuList.length, cpu: cpuList[0]?.model.trim() ?? 'unknown CPU', node: process.version, loadavgAtStart: loadavg()[0]! },
  seed, scoreLimit, clusters: [],
};
for (const n of nodeCounts) {
  note(`${n} nodes: synthesizing ${containers} containers of ${serviceCount} services`);
  const cluster = buildCluster(seed + n, n, containers, serviceCount);
  const t = performance.now();
  new Scheduler(cluster.nodes);
  const buildMs = performance.now() - t;
  const stream = requestStream(seed + n + 1, cluster, requests);
  // Warm-up, unrecorded: the JIT sees every plugin and both strategies before the clock runs.
  for (const m of MODES) timeStream(cluster.nodes, requestStream(seed + n + 2, cluster, m.options.scoreLimit === 'all' ? 200 : 3000), m);
  const run: ClusterRun = { nodes: n, containers: cluster.placed, services: cluster.services.length, dropped: cluster.dropped, buildMs, modes: [] };
  for (const m of MODES) {
    const s = m.options.scoreLimit === 'all' ? stream.slice(0, fullRequests) : stream;
    if (s.length === 0) continue;
    note(`${n} nodes, ${m.mode}: ${s.length} placements`);
    const r = timeStream(cluster.nodes, s, m);
    note(`${n} nodes, ${m.mode}: ${r.placementsPerSec.toFixed(0)} placements/s, p50 ${r.latencyUs.p50.toFixed(1)} µs, p99 ${r.latencyUs.p99.toFixed(1)} µs`);
    run.modes.push(r);
  }
  const sampled = run.modes.find((x) => x.mode === 'sampled');
  const full = run.modes.find((x) => x.mode === 'full-scan');
  if (sampled && full) {
    run.speedupVsFullScan = sampled.placementsPerSec / full.placementsPerSec;
    run.speedupVsFullScanCpu = sampled.placementsPerCpuSec / full.placementsPerCpuSec;
  }
  result.clusters.push(run);
}
result.machine.loadavgAtEnd = loadavg()[0]!;
if (values.o === 'json') console.log(JSON.stringify(result, null, 2));
else console.log(renderText(result));
