/**
 * The figures of bench/migration per workload size, the ratios against the peers, the issue's targets
 * judged on them, and the text rendering (tables, ratio lines, raw figures).
 */
import { median } from '../support/stats.ts';
import type { Strategy } from './ferry.ts';
import type { PodmanRun } from './podman.ts';
import type { RawCriuRun } from './raw-criu.ts';

/** The runs of one way of moving the workload, and the errors of the runs that produced no figures. */
export interface Series<T> {
  runs: T[];
  errors: string[];
}

/** One Ferry migration's figures. */
export interface FerryRun {
  freezeMs: number;
  totalMs: number;
  /** Freeze phase: pause + dump on the source (absent when the history lacks it). */
  dumpMs?: number;
  /** Restore phase: the target fetches the archive, unpacks it and restores. */
  restoreMs?: number;
  bytes: number;
}

/** Everything measured at one workload size. */
export interface SizeResult {
  sizeMiB: number;
  ferry: Partial<Record<Strategy, Series<FerryRun>>>;
  rawCriu: Series<RawCriuRun>;
  podman: Series<PodmanRun>;
}

/** A target of the issue, judged on this run. */
export interface TargetVerdict {
  target: string;
  verdict: 'met' | 'NOT met' | 'not measured';
  detail: string;
}

/** Ratios at one size: Podman's freeze over each strategy's (how many times shorter), stop-copy over raw CRIU. */
export interface SizeRatios {
  sizeMiB: number;
  podmanOverFerryFreeze: Partial<Record<Strategy, number>>;
  stopCopyOverRawCriuFreeze?: number;
}

/** Median of one field over a series' runs. */
function med<T>(s: Series<T> | undefined, key: keyof T): number | undefined {
  return s ? median(s.runs.map((r) => r[key]).filter((v): v is T[keyof T] & number => typeof v === 'number')) : undefined;
}

/** Why a series has no figure: its first error (cut to `max` characters), or that it did not run. */
function why<T>(s: Series<T> | undefined, max = Infinity): string {
  const e = s?.errors[0] ?? 'not run';
  return e.length > max ? `${e.slice(0, max - 1)}…` : e;
}

/** The ratios of one size (absent where a side has no figure). */
export function ratiosOf(r: SizeResult): SizeRatios {
  const podman = med(r.podman, 'freezeMs');
  const out: SizeRatios = { sizeMiB: r.sizeMiB, podmanOverFerryFreeze: {} };
  for (const [strategy, s] of Object.entries(r.ferry) as [Strategy, Series<FerryRun>][]) {
    const freeze = med(s, 'freezeMs');
    if (podman !== undefined && freeze !== undefined) out.podmanOverFerryFreeze[strategy] = podman / freeze;
  }
  const stop = med(r.ferry['stop-copy'], 'freezeMs');
  const raw = med(r.rawCriu, 'freezeMs');
  if (stop !== undefined && raw !== undefined) out.stopCopyOverRawCriuFreeze = stop / raw;
  return out;
}

/** Judges a measured value against a bound, or says why there is no value. */
function judge(target: string, value: number | undefined, ok: (v: number) => boolean, shown: (v: number) => string, missing: string): TargetVerdict {
  if (value === undefined) return { target, verdict: 'not measured', detail: missing };
  return { target, verdict: ok(value) ? 'met' : 'NOT met', detail: shown(value) };
}

/** The issue's four targets, per size where they apply. */
export function judgeTargets(results: SizeResult[], strategies: Strategy[], dirtyPct: number): TargetVerdict[] {
  const out: TargetVerdict[] = [];
  const ms = (v: number): string => `${v.toFixed(0)} ms`;
  const times = (v: number): string => `${v.toFixed(2)}×`;
  for (const r of results) {
    const post = r.ferry['post-copy'];
    out.push(judge(`post-copy freeze ≤ 100 ms @${r.sizeMiB} MiB`, med(post, 'freezeMs'), (v) => v <= 100, ms, why(post, 160)));
  }
  const gib = results.find((r) => r.sizeMiB === 1024);
  const pre = gib?.ferry['pre-copy'];
  const preMissing = !gib ? 'no 1024 MiB workload in this run' : dirtyPct !== 1 ? `run with --dirty-pct 1 (this run: ${dirtyPct})` : why(pre, 160);
  out.push(judge('pre-copy freeze ≤ 300 ms @1024 MiB, 1 %/s dirtied', dirtyPct === 1 ? med(pre, 'freezeMs') : undefined, (v) => v <= 300, ms, preMissing));
  for (const r of results) {
    const raw = ratiosOf(r).stopCopyOverRawCriuFreeze;
    const missing = med(r.ferry['stop-copy'], 'freezeMs') === undefined ? `stop-copy: ${why(r.ferry['stop-copy'], 160)}` : `raw CRIU: ${why(r.rawCriu, 160)}`;
    out.push(judge(`stop-copy freeze ≤ 1.2 × raw CRIU dump+copy+restore @${r.sizeMiB} MiB`, raw, (v) => v <= 1.2, times, missing));
  }
  for (const strategy of strategies) {
    const ratio = gib ? ratiosOf(gib).podmanOverFerryFreeze[strategy] : undefined;
    const missing = !gib ? 'no 1024 MiB workload in this run' : med(gib.podman, 'freezeMs') === undefined ? `Podman: ${why(gib.podman, 160)}` : `${strategy}: ${why(gib.ferry[strategy], 160)}`;
    out.push(judge(`${strategy} freeze ≥ 5× shorter than Podman's @1024 MiB`, ratio, (v) => v >= 5, (v) => `${times(v)} shorter`, missing));
  }
  return out;
}

const W = 9;
const cell = (v: number | undefined, digits = 0): string => (v === undefined ? '-' : v.toFixed(digits)).padStart(W);
const mib = (b: number | undefined): string => (b === undefined ? '-' : `${(b / 1048576).toFixed(1)}M`).padStart(W);

/** One table row: medians of the series, or its error in place of figures. */
function row<T>(label: string, s: Series<T> | undefined, cols: (keyof T | undefined)[], bytesKey: keyof T): string {
  if (!s || s.runs.length === 0) return `${label.padEnd(22)}  ${why(s)}`;
  const figures = cols.map((k) => cell(k === undefined ? undefined : med(s, k))).join('');
  const failed = s.errors.length > 0 ? `   (${s.errors.length} failed: ${s.errors[0]})` : '';
  return `${label.padEnd(22)}${figures}${mib(med(s, bytesKey))}${failed}`;
}

/** Raw figures of a series: every field, each run's value in run order. */
function rawLine<T extends object>(label: string, s: Series<T> | undefined): string | undefined {
  if (!s || s.runs.length === 0) return undefined;
  const keys = Object.keys(s.runs[0]!) as (keyof T & string)[];
  const value = (v: unknown): string => (typeof v === 'number' ? v.toFixed(0) : '-');
  return `raw ${label}: ${keys.map((k) => `${k.replace(/Ms$/, '')} ${s.runs.map((r) => value(r[k])).join(',')}`).join(' | ')}`;
}

/** The text report: a table per size, ratio lines, the targets, raw figures. */
export function renderText(results: SizeResult[], o: { reps: number; dirtyPct: number; targets: TargetVerdict[]; podmanNote?: string }): string {
  const lines: string[] = [];
  for (const r of results) {
    lines.push('', `bench/migration: ${r.sizeMiB} MiB ballast, ${o.dirtyPct} %/s of it rewritten, ${o.reps} repetition(s) — medians, ms`);
    lines.push(`${''.padEnd(22)}${['freeze', 'total', 'dump', 'copy', 'restore', 'bytes'].map((h) => h.padStart(W)).join('')}`);
    for (const [strategy, s] of Object.entries(r.ferry) as [Strategy, Series<FerryRun>][]) {
      lines.push(row(`Ferry ${strategy}`, s, ['freezeMs', 'totalMs', 'dumpMs', undefined, 'restoreMs'], 'bytes'));
    }
    lines.push(row('raw runc+CRIU', r.rawCriu, ['freezeMs', undefined, 'dumpMs', 'copyMs', 'restoreMs'], 'bytes'));
    lines.push(row('Podman ckpt/rm/restore', r.podman, ['freezeMs', undefined, 'checkpointMs', 'rmMs', 'restoreMs'], 'bytes'));
    const ratios = ratiosOf(r);
    for (const [strategy, v] of Object.entries(ratios.podmanOverFerryFreeze)) lines.push(`ratio Podman freeze / Ferry ${strategy} freeze: ${v.toFixed(2)}×   (target ≥ 5× at 1024 MiB)`);
    if (ratios.stopCopyOverRawCriuFreeze !== undefined) lines.push(`ratio Ferry stop-copy freeze / raw CRIU freeze: ${ratios.stopCopyOverRawCriuFreeze.toFixed(2)}×   (target ≤ 1.2×)`);
  }
  lines.push('', 'Ferry: freeze/total/bytes from the Migration status (post-copy bytes: what moved at the freeze; the pages follow);',
    '  dump = its Freeze phase, restore = its Restore phase (fetch of the archive from the source + unpack + runc restore).',
    'raw runc+CRIU: dump = runc checkpoint, copy = cp -a + chown of the image, restore = runc restore -d.',
    'Podman: dump = checkpoint --export, copy = podman rm, restore = restore --import.',
    'Order: Ferry first in odd repetitions, the peers first in even ones (host memory warms over a run).');
  if (o.podmanNote) lines.push(`Podman: ${o.podmanNote}`);
  lines.push('', 'targets:');
  for (const t of o.targets) lines.push(`  ${t.verdict.padEnd(12)} ${t.target}: ${t.detail}`);
  lines.push('');
  for (const r of results) {
    const series: [string, Series<object> | undefined][] = [
      ...(Object.entries(r.ferry) as [Strategy, Series<FerryRun>][]).map(([k, s]): [string, Series<object>] => [`Ferry ${k}`, s]),
      ['raw CRIU', r.rawCriu], ['Podman', r.podman],
    ];
    for (const [label, s] of series) {
      const line = rawLine(`${r.sizeMiB} MiB ${label}`, s);
      if (line) lines.push(line);
    }
  }
  return lines.join('\n');
}
