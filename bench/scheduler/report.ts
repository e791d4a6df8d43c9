/** bench/scheduler's figures: one timed stream per mode and cluster, the summaries, ratios, references and the text table. */
import { stats } from '../support/stats.ts';

/** One timed stream of placements through one scheduler mode. */
export interface ModeRun {
  /** `sampled`, `sampled+verdicts` or `full-scan`. */
  mode: string;
  /** What the mode does, in words. */
  description: string;
  requests: number;
  placed: number;
  unplaced: number;
  /** Wall time of the whole stream, ms. */
  wallMs: number;
  placementsPerSec: number;
  /** CPU time of this process over the stream (user + system), ms: what other load on the machine does not inflate. */
  cpuMs: number;
  placementsPerCpuSec: number;
  /** Per decision, µs. */
  latencyUs: { p50: number; p99: number; max: number; mean: number };
  /** Mean over the placed of the winner's score (0–100): what the sample gives up against a full scan. */
  meanWinnerScore: number;
  /** Mean number of nodes the filters ran on per decision. */
  meanExamined: number;
}

/** Everything measured on one cluster size. */
export interface ClusterRun {
  nodes: number;
  containers: number;
  services: number;
  /** Containers the synthesis found no node for (left out). */
  dropped: number;
  /** `new Scheduler(nodes)` on the pre-placed cluster, ms. */
  buildMs: number;
  modes: ModeRun[];
  /** sampled placements/s ÷ full-scan placements/s (wall). */
  speedupVsFullScan?: number;
  /** The same per CPU-second. */
  speedupVsFullScanCpu?: number;
}

/** Figures quoted from elsewhere, for scale (not measured here). */
export const REFERENCES = [
  { name: 'Nomad C1M (2016): 1M containers on 5,000 hosts, 5 servers', placementsPerSec: 3750 },
  { name: 'kube-scheduler, typical quoted range', placementsPerSec: 100, upTo: 400 },
] as const;

/** The target: placements per second on one manager, 5,000 nodes, 100,000 containers placed. */
export const TARGET_PER_SEC = 10_000;

/** The whole run. */
export interface SchedulerResult {
  /** Load averages (1 min) around the run: other work on the machine inflates wall-clock figures and tails. */
  machine: { cores: number; cpu: string; node: string; loadavgAtStart: number; loadavgAtEnd?: number };
  seed: number;
  scoreLimit: number;
  clusters: ClusterRun[];
}

/** p50/p99/max/mean of per-decision latencies given in ms, as µs. */
export function latency(ms: number[]): ModeRun['latencyUs'] {
  const s = [...ms].sort((a, b) => a - b);
  const st = stats(ms);
  const p99 = s[Math.min(s.length - 1, Math.floor(0.99 * s.length))]!;
  return { p50: st.median * 1000, p99: p99 * 1000, max: st.max * 1000, mean: st.mean * 1000 };
}

const num = (v: number | undefined, digits: number, w: number): string => (v === undefined ? '-' : v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })).padStart(w);

/** The table, the references with the target's pass/fail, and the raw figures. */
export function renderText(r: SchedulerResult): string {
  const out: string[] = [];
  const m = r.machine;
  out.push(`bench/scheduler on ${m.cores} cores (${m.cpu}), Node ${m.node}; one process, one thread; seed ${r.seed}; score limit ${r.scoreLimit} feasible nodes`);
  out.push(`load average (1 min) ${m.loadavgAtStart.toFixed(1)} at the start, ${m.loadavgAtEnd?.toFixed(1) ?? '?'} at the end: above ${m.cores}, wall-clock rates and tails include time spent waiting for a core`);
  out.push('');
  out.push(`${'cluster'.padEnd(26)}${'mode'.padEnd(18)}${'placements/s'.padStart(13)}${'per CPU-s'.padStart(11)}${'p50 µs'.padStart(9)}${'p99 µs'.padStart(9)}${'max µs'.padStart(9)}${'examined'.padStart(10)}${'score'.padStart(7)}${'placed'.padStart(8)}${`≥${TARGET_PER_SEC / 1000}k/s`.padStart(8)}`);
  for (const c of r.clusters) {
    const label = `${c.nodes} nodes, ${(c.containers / 1000).toFixed(0)}k placed`;
    for (const x of c.modes) {
      // The target is the scheduler's own mode; the others are there for comparison.
      const pass = x.mode !== 'sampled' ? '-' : x.placementsPerSec >= TARGET_PER_SEC ? 'pass' : 'FAIL';
      out.push(`${label.padEnd(26)}${x.mode.padEnd(18)}${num(x.placementsPerSec, 0, 13)}${num(x.placementsPerCpuSec, 0, 11)}${num(x.latencyUs.p50, 1, 9)}${num(x.latencyUs.p99, 1, 9)}${num(x.latencyUs.max, 0, 9)}${num(x.meanExamined, 0, 10)}${num(x.meanWinnerScore, 1, 7)}${`${x.placed}`.padStart(8)}${pass.padStart(8)}`);
    }
    if (c.speedupVsFullScan !== undefined) out.push(`${''.padEnd(26)}ratio sampled / full scan: ${c.speedupVsFullScan.toFixed(1)}× wall, ${c.speedupVsFullScanCpu?.toFixed(1)}× per CPU-s`);
  }
  out.push('');
  out.push('for scale (quoted, not measured here):');
  for (const ref of REFERENCES) out.push(`  ${ref.name.padEnd(62)}${'upTo' in ref ? `${ref.placementsPerSec}–${ref.upTo}` : ref.placementsPerSec.toLocaleString('en-US')} placements/s`);
  const big = r.clusters.find((c) => c.nodes === 5000)?.modes.find((x) => x.mode === 'sampled');
  out.push(`  target: ≥ ${TARGET_PER_SEC.toLocaleString('en-US')} placements/s with 5,000 nodes and 100,000 containers placed: ${big ? `${big.placementsPerSec >= TARGET_PER_SEC ? 'PASS' : 'FAIL'} (${num(big.placementsPerSec, 0, 0)}/s)` : 'not run (no 5,000-node cluster in this run)'}`);
  out.push('');
  out.push('modes:');
  const seen = new Set<string>();
  for (const c of r.clusters) for (const x of c.modes) if (!seen.has(x.mode)) { seen.add(x.mode); out.push(`  ${x.mode.padEnd(18)}${x.description}`); }
  out.push('  placements/s = requests ÷ wall time of the stream (the target\'s figure); per CPU-s = requests ÷ this process\'s CPU time over it');
  out.push('  examined = nodes the filters ran on per decision (mean); score = the winner\'s weighted score (mean, 0–100); placed = of the requests');
  out.push('');
  out.push('raw:');
  for (const c of r.clusters) {
    out.push(`  ${c.nodes} nodes: ${c.containers} containers pre-placed (${c.dropped} found no node), ${c.services} services; new Scheduler() ${c.buildMs.toFixed(0)} ms`);
    for (const x of c.modes) out.push(`    ${x.mode}: ${x.requests} requests in ${x.wallMs.toFixed(0)} ms (CPU ${x.cpuMs.toFixed(0)} ms), ${x.placed} placed, ${x.unplaced} unplaced, latency mean ${x.latencyUs.mean.toFixed(1)} µs`);
  }
  return out.join('\n');
}
