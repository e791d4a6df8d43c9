/** bench/lb's figures: what one run measured, the summary against the targets, and the text rendering. */
import { median, stats, type Stats } from '../support/stats.ts';
import type { ChurnSteps } from './churn.ts';
import type { Backend } from './hand-haproxy.ts';
import type { PhaseFigures } from './load.ts';
import type { WrkRun } from './wrk.ts';

/** The runs against one entry point, each with its rep and the 1-minute load average at its start, and the errors of runs that produced no figures. */
export interface Series {
  runs: (WrkRun & { rep: number; load: number })[];
  errors: string[];
}

/** Everything one run measured. */
export interface LbResult {
  machine: { cores: number; cpu: string; kernel: string; node: string; haproxy: string; wrk: string };
  /** os.loadavg() (1, 5, 15 min) at the start and at the end of the run. */
  loadavg: { start: number[]; end?: number[] };
  startedAt: string;
  wallSeconds?: number;
  options: { seconds: number; reps: number; connections: number; migrations: number; heldMigrations?: number; strategy: string; loadConnections: number; paceMs: number; settleMs: number };
  where?: { ferry: string; hand: string; lbNetns: string; clientNetns: string; underlay: string };
  backends: Backend[];
  wrkArgv?: string[];
  handConfig?: string;
  throughput: { ferry: Series; hand: Series };
  churn: { loadArgv?: string[]; phases: PhaseFigures[]; overall?: PhaseFigures; steps: ChurnSteps['steps']; migrations: ChurnSteps['migrations']; loadSummary?: string; errors: string[] };
}

/** One target: what, the figure, the bound, and whether it holds (undefined: no figure). */
export interface Check {
  what: string;
  value: string;
  target: string;
  pass?: boolean;
}

/** Medians, ratios and the targets. */
export interface LbSummary {
  reqPerSec: { ferry?: number; hand?: number; ratio?: number };
  /** Ferry/hand req/s of each rep's two back-to-back runs (less exposed to a drift of the machine's load than the medians). */
  repRatios: number[];
  /** Median over the reps of each rep's p99, ms. */
  p99Ms: { ferry?: number; hand?: number; ratio?: number };
  failedByPhase: Record<string, number>;
  p99OverallMs?: number;
  p99MigrationsMs?: number;
  freezeMs?: Stats;
  /** p99 during the migrations / the median freeze. */
  p99OverFreeze?: number;
  /** The same for the migrations of an only replica, whose requests the entry point holds. */
  held?: { p99Ms?: number; freezeMs?: Stats; p99OverFreeze?: number; maxMs?: number; maxOverFreeze?: number };
  checks: Check[];
}

const pair = (ferry: number | undefined, hand: number | undefined): { ferry?: number; hand?: number; ratio?: number } => ({
  ...(ferry !== undefined ? { ferry } : {}), ...(hand !== undefined ? { hand } : {}),
  ...(ferry !== undefined && hand !== undefined ? { ratio: ferry / hand } : {}),
});
const fix = (v: number | undefined, d: number): string => (v === undefined ? '-' : v.toFixed(d));

/** The migration phase is the one whose name says so. */
export const isMigrationPhase = (name: string): boolean => name.endsWith('live migrations');

/** Medians over the reps, ratios, and every target checked. */
export function summarize(r: LbResult): LbSummary {
  const rps = (s: Series): number | undefined => median(s.runs.map((x) => x.reqPerSec));
  const p99 = (s: Series): number | undefined => median(s.runs.map((x) => x.latencyUs.p99 / 1000));
  const reqPerSec = pair(rps(r.throughput.ferry), rps(r.throughput.hand));
  const p99Ms = pair(p99(r.throughput.ferry), p99(r.throughput.hand));
  const repRatios = r.throughput.ferry.runs.flatMap((f) => r.throughput.hand.runs.filter((h) => h.rep === f.rep).map((h) => f.reqPerSec / h.reqPerSec));
  const failedByPhase = Object.fromEntries(r.churn.phases.map((p) => [p.name, p.failed]));
  const mig = r.churn.phases.find((p) => isMigrationPhase(p.name));
  const freezes = r.churn.migrations.filter((m) => !m.held).map((m) => m.freezeMs).filter((x): x is number => x !== undefined);
  const heldPhase = r.churn.phases.find((p) => p.name.endsWith('held migrations'));
  const heldFreezes = r.churn.migrations.filter((m) => m.held).map((m) => m.freezeMs).filter((x): x is number => x !== undefined);
  const heldFreeze = heldFreezes.length > 0 ? stats(heldFreezes) : undefined;
  const heldP99 = heldPhase?.latencyMs?.p99;
  const heldRatio = heldP99 !== undefined && heldFreeze ? heldP99 / heldFreeze.median : undefined;
  // Most of the phase lies between freezes, so its p99 says little: the longest request is the one held
  // through a whole freeze, and it should end right after that freeze.
  const heldMax = heldPhase?.latencyMs?.max;
  const heldMaxRatio = heldMax !== undefined && heldFreeze ? heldMax / heldFreeze.max : undefined;
  const freezeMs = freezes.length > 0 ? stats(freezes) : undefined;
  const p99MigrationsMs = mig?.latencyMs?.p99;
  const p99OverFreeze = p99MigrationsMs !== undefined && freezeMs ? p99MigrationsMs / freezeMs.median : undefined;
  const succeeded = r.churn.migrations.filter((m) => m.phase === 'Succeeded').length;
  const wanted = r.options.migrations + (r.options.heldMigrations ?? 0);
  const wrkFailed = [...r.throughput.ferry.runs, ...r.throughput.hand.runs].reduce((a, x) => a + x.errors.status + x.errors.connect + x.errors.read + x.errors.write + x.errors.timeout, 0);
  const checks: Check[] = [
    { what: 'throughput Ferry / hand-written (median req/s)', value: fix(reqPerSec.ratio, 2), target: '≥ 0.90', ...(reqPerSec.ratio !== undefined ? { pass: reqPerSec.ratio >= 0.9 } : {}) },
    { what: 'failed requests during the throughput runs', value: String(wrkFailed), target: '0', ...(r.throughput.ferry.runs.length > 0 ? { pass: wrkFailed === 0 } : {}) },
    ...r.churn.phases.map((p) => ({ what: `failed requests: ${p.name}`, value: String(p.failed), target: '0', pass: p.failed === 0 })),
    {
      what: 'migrations that succeeded', value: `${succeeded}/${r.churn.migrations.length}`, target: `${wanted}/${wanted}`,
      ...(r.churn.migrations.length > 0 ? { pass: succeeded === wanted } : {}),
    },
    { what: 'p99 during the migrations / median freeze', value: fix(p99OverFreeze, 2), target: '≤ 2', ...(p99OverFreeze !== undefined ? { pass: p99OverFreeze <= 2 } : {}) },
    ...(heldPhase ? [{ what: 'held (only replica): p99 during its migrations / its median freeze', value: fix(heldRatio, 2), target: '≤ 2', ...(heldRatio !== undefined ? { pass: heldRatio <= 2 } : {}) }] : []),
    ...(heldPhase ? [{ what: 'held (only replica): longest request / longest freeze', value: fix(heldMaxRatio, 2), target: '≤ 2', ...(heldMaxRatio !== undefined ? { pass: heldMaxRatio <= 2 } : {}) }] : []),
  ];
  return {
    reqPerSec, repRatios, p99Ms, failedByPhase, ...(r.churn.overall?.latencyMs ? { p99OverallMs: r.churn.overall.latencyMs.p99 } : {}),
    ...(p99MigrationsMs !== undefined ? { p99MigrationsMs } : {}), ...(freezeMs ? { freezeMs } : {}), ...(p99OverFreeze !== undefined ? { p99OverFreeze } : {}),
    ...(heldPhase ? { held: { ...(heldP99 !== undefined ? { p99Ms: heldP99 } : {}), ...(heldFreeze ? { freezeMs: heldFreeze } : {}), ...(heldRatio !== undefined ? { p99OverFreeze: heldRatio } : {}), ...(heldMax !== undefined ? { maxMs: heldMax } : {}), ...(heldMaxRatio !== undefined ? { maxOverFreeze: heldMaxRatio } : {}) } } : {}),
    checks,
  };
}

const cell = (v: number | undefined, digits: number, w: number): string => fix(v, digits).padStart(w);
const loads = (xs: number[] | undefined): string => (xs ? xs.map((x) => x.toFixed(2)).join(' ') : '-');

/** The tables (targets with pass/fail) and the raw figures. */
export function renderText(r: LbResult, s: LbSummary, failure?: string): string {
  const out: string[] = [];
  const m = r.machine;
  const o = r.options;
  out.push(`bench/lb on ${m.cores} cores (${m.cpu}), Linux ${m.kernel}, Node ${m.node}, ${m.haproxy}, ${m.wrk}; ferry up --nodes 2`);
  out.push(`  load average (1/5/15 min): ${loads(r.loadavg.start)} at the start, ${loads(r.loadavg.end)} at the end (other work on this machine moves the figures)`);
  if (r.where) {
    out.push(`  Ferry's entry point ${r.where.ferry} and the hand-written HAProxy ${r.where.hand}, both in ${r.where.lbNetns}; clients in ${r.where.clientNetns} (underlay ${r.where.underlay})`);
  }
  out.push(`  backends: ${r.backends.map((b) => `${b.name} ${b.ip}:${b.port}`).join(', ') || '-'}`);
  out.push(`  ${o.reps} reps × ${o.seconds} s per entry point, alternating: ${r.wrkArgv?.join(' ') ?? 'wrk'}`);
  out.push('');
  const W = 12;
  out.push(`${''.padEnd(36)}${'Ferry'.padStart(W)}${'hand'.padStart(W)}${'ratio F/h'.padStart(W)}`);
  out.push(`${'throughput, req/s (median)'.padEnd(36)}${cell(s.reqPerSec.ferry, 0, W)}${cell(s.reqPerSec.hand, 0, W)}${cell(s.reqPerSec.ratio, 2, W)}`);
  out.push(`${'latency p99, ms (median of reps)'.padEnd(36)}${cell(s.p99Ms.ferry, 2, W)}${cell(s.p99Ms.hand, 2, W)}${cell(s.p99Ms.ratio, 2, W)}`);
  out.push(`  each rep's Ferry/hand req/s: ${s.repRatios.map((x) => x.toFixed(2)).join(' ') || '-'} (median ${fix(median(s.repRatios), 2)}; the target below uses the ratio of the medians)`);
  out.push('');
  out.push(`under continuous load (http-load.mjs: ${o.loadConnections} keep-alive connections, ${o.paceMs} ms between an answer and the next request, every request logged):`);
  out.push(`${'phase'.padEnd(24)}${'s'.padStart(7)}${'requests'.padStart(10)}${'req/s'.padStart(8)}${'failed'.padStart(8)}${'p50 ms'.padStart(9)}${'p99 ms'.padStart(9)}${'p99.9'.padStart(9)}${'max ms'.padStart(9)}  load`);
  for (const p of [...r.churn.phases, ...(r.churn.overall ? [r.churn.overall] : [])]) {
    const l = p.latencyMs;
    out.push(`${p.name.padEnd(24)}${cell(p.seconds, 1, 7)}${String(p.requests).padStart(10)}${cell(p.reqPerSec, 0, 8)}${String(p.failed).padStart(8)}${cell(l?.p50, 2, 9)}${cell(l?.p99, 2, 9)}${cell(l?.p999, 1, 9)}${cell(l?.max, 1, 9)}  ${p.load.map((x) => x.toFixed(2)).join('→')}`);
  }
  const f = s.freezeMs;
  out.push(`migration freeze (status.freezeMs), ms: median ${fix(f?.median, 0)}, max ${fix(f?.max, 0)}, min ${fix(f?.min, 0)}; p99 during the migrations ${fix(s.p99MigrationsMs, 2)} ms, overall ${fix(s.p99OverallMs, 2)} ms`);
  out.push(`  (the service keeps ${r.backends.length || 'its'} replicas while they move: the entry point takes the frozen one out of the rotation instead of holding its requests)`);
  if (s.held) {
    out.push(`held (only replica) migrations: freeze median ${fix(s.held.freezeMs?.median, 0)} ms, max ${fix(s.held.freezeMs?.max, 0)} ms; p99 during them ${fix(s.held.p99Ms, 2)} ms;`);
    out.push(`  the longest request ${fix(s.held.maxMs, 1)} ms = ${fix(s.held.maxOverFreeze, 2)}× the longest freeze (held at the entry point through it, released when the restore ran)`);
  }
  out.push('');
  out.push(`${'target'.padEnd(50)}${'value'.padStart(10)}${'bound'.padStart(10)}  result`);
  for (const c of s.checks) out.push(`${c.what.padEnd(50)}${c.value.padStart(10)}${c.target.padStart(10)}  ${c.pass === undefined ? 'no figure' : c.pass ? 'pass' : 'FAIL'}`);
  out.push('');
  out.push('raw:');
  for (const k of ['ferry', 'hand'] as const) {
    const runs = r.throughput[k].runs.map((x) => `${x.reqPerSec.toFixed(0)} req/s p50 ${(x.latencyUs.p50 / 1000).toFixed(2)} p99 ${(x.latencyUs.p99 / 1000).toFixed(2)} ms${x.errors.status + x.errors.read + x.errors.connect + x.errors.write + x.errors.timeout > 0 ? ` errors ${JSON.stringify(x.errors)}` : ''} (load ${x.load.toFixed(2)})`);
    out.push(`  ${k.padEnd(5)} wrk runs: ${runs.join('; ') || '-'}`);
  }
  for (const p of r.churn.phases) {
    const fails = Object.entries(p.failures).map(([e, n]) => `${e} ×${n}`).join(', ');
    out.push(`  ${p.name}: answered by ${Object.entries(p.replicas).map(([n, c]) => `${n} ${c}`).join(', ') || '-'}${fails ? `; failures: ${fails}; first at ${p.firstFailures.map((x) => `${x.atMs} ms ${x.error}`).join(', ')}` : ''}`);
  }
  for (const st of r.churn.steps) out.push(`  step ${st.name}: ${(st.ms / 1000).toFixed(1)} s${st.error ? ` FAILED ${st.error}` : ''}`);
  r.churn.migrations.forEach((x, i) => {
    out.push(`  migration ${String(i + 1).padStart(2)}: ${x.replica} ${x.from} → ${x.to} ${x.phase}${x.strategy ? ` ${x.strategy}` : ''}, freeze ${fix(x.freezeMs, 0)} ms, total ${fix(x.totalMs, 0)} ms, CLI ${x.wallMs} ms${x.phaseMs ? ` (${Object.entries(x.phaseMs).map(([k, v]) => `${k} ${v}`).join(', ')})` : ''}${x.error ? `: ${x.error}` : ''}`);
  });
  const errors = [...r.throughput.ferry.errors.map((e) => `wrk Ferry: ${e}`), ...r.throughput.hand.errors.map((e) => `wrk hand: ${e}`), ...r.churn.errors];
  for (const e of errors) out.push(`ERROR ${e}`);
  if (r.wallSeconds !== undefined) out.push(`wall time ${r.wallSeconds.toFixed(0)} s`);
  if (failure) out.push(`STOPPED ${failure}`);
  return out.join('\n');
}
