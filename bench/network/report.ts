/** bench/network's figures: what one run measured, the summaries and ratios, and the text rendering. */
import { median, stats, type Stats } from '../support/stats.ts';
import type { FirstPacketResult } from './first-packet.ts';
import type { RttRun, StreamRun } from './traffic.ts';

/** The runs over one path, and the errors of the runs that produced no figures. */
export interface Series<T> {
  runs: T[];
  errors: string[];
}

/** A path's first hop as seen from the client. */
export interface Hop {
  from: string;
  to: string;
  dev?: string;
  mtu?: number;
}

/** Everything one run measured. */
export interface NetworkResult {
  machine: { cores: number; cpu: string; kernel: string; node: string };
  seconds: number;
  reps: number;
  messageBytes: number;
  underlay?: string;
  paths: { host?: Hop; container?: Hop };
  throughput: { host: Series<StreamRun>; container: Series<StreamRun> };
  latency: { host: Series<RttRun>; container: Series<RttRun> };
  firstPacket: FirstPacketResult;
}

/** The medians and ratios of a result (absent where a side has no figure). */
export interface NetworkSummary {
  gbitPerSec: { host?: number; container?: number; ratio?: number };
  /** Median over the reps of each rep's percentile, µs. */
  rttP50Us: { host?: number; container?: number; ratio?: number };
  rttP99Us: { host?: number; container?: number; ratio?: number };
  /** One connection held across the move (gap, …) and fresh connections (fresh…). */
  firstPacketMs: {
    freeze?: Stats; gap?: Stats; restoreEndToFirst?: Stats; switchEndToFirst?: Stats;
    freshGap?: Stats; freshRestoreEndToFirst?: Stats; freshSwitchEndToFirst?: Stats;
  };
}

const pair = (host: number | undefined, container: number | undefined): { host?: number; container?: number; ratio?: number } => ({
  ...(host !== undefined ? { host } : {}), ...(container !== undefined ? { container } : {}),
  ...(host !== undefined && container !== undefined ? { ratio: container / host } : {}),
});
const maybeStats = (xs: number[]): Stats | undefined => (xs.length > 0 ? stats(xs) : undefined);

/** Medians over the reps, and container/host ratios. */
export function summarize(r: NetworkResult): NetworkSummary {
  const gbit = (s: Series<StreamRun>): number | undefined => median(s.runs.map((x) => x.bitsPerSec / 1e9));
  const rtt = (s: Series<RttRun>, k: 'p50' | 'p99'): number | undefined => median(s.runs.map((x) => x[k]));
  const moves = r.firstPacket.moves;
  return {
    gbitPerSec: pair(gbit(r.throughput.host), gbit(r.throughput.container)),
    rttP50Us: pair(rtt(r.latency.host, 'p50'), rtt(r.latency.container, 'p50')),
    rttP99Us: pair(rtt(r.latency.host, 'p99'), rtt(r.latency.container, 'p99')),
    firstPacketMs: {
      freeze: maybeStats(moves.map((m) => m.freezeMs).filter(Number.isFinite)),
      gap: maybeStats(moves.map((m) => m.gapMs)),
      restoreEndToFirst: maybeStats(moves.map((m) => m.restoreEndToFirstMs)),
      switchEndToFirst: maybeStats(moves.map((m) => m.switchEndToFirstMs)),
      freshGap: maybeStats(moves.map((m) => m.fresh.gapMs)),
      freshRestoreEndToFirst: maybeStats(moves.map((m) => m.fresh.restoreEndToFirstMs)),
      freshSwitchEndToFirst: maybeStats(moves.map((m) => m.fresh.switchEndToFirstMs)),
    },
  };
}

const cell = (v: number | undefined, digits: number, w: number): string => (v === undefined ? '-' : v.toFixed(digits)).padStart(w);
const hop = (h: Hop | undefined): string => (h ? `${h.from} → ${h.to}${h.dev ? ` (${h.dev}, MTU ${h.mtu ?? '?'})` : ''}` : '-');
const list = (xs: number[], digits: number): string => (xs.length > 0 ? xs.map((x) => x.toFixed(digits)).join(' ') : '-');

/** The table, the ratios and the raw figures. */
export function renderText(r: NetworkResult, s: NetworkSummary, failure?: string): string {
  const out: string[] = [];
  const m = r.machine;
  out.push(`bench/network on ${m.cores} cores (${m.cpu}), Linux ${m.kernel}, Node ${m.node}; ferry up --nodes 2${r.underlay ? `, underlay ${r.underlay}` : ''}`);
  out.push(`  host↔host:           ${hop(r.paths.host)}`);
  out.push(`  container↔container: ${hop(r.paths.container)}`);
  out.push(`  ${r.reps} reps × ${r.seconds} s per path, the two paths alternating; one TCP connection (tcp-tool.mjs under nsenter)`);
  out.push('');
  const W = 13;
  out.push(`${''.padEnd(34)}${'host↔host'.padStart(W)}${'cont↔cont'.padStart(W)}${'ratio c/h'.padStart(W)}`);
  const row = (label: string, p: { host?: number; container?: number; ratio?: number }, digits: number): void => {
    out.push(`${label.padEnd(34)}${cell(p.host, digits, W)}${cell(p.container, digits, W)}${cell(p.ratio, 2, W)}`);
  };
  row('throughput, Gbit/s (median)', s.gbitPerSec, 2);
  row(`RTT ${r.messageBytes} B ping-pong p50, µs`, s.rttP50Us, 0);
  row(`RTT ${r.messageBytes} B ping-pong p99, µs`, s.rttP99Us, 0);
  out.push('');
  const fp = r.firstPacket;
  out.push(`restore → first packet: the sample app's line echo moved stop-copy ${fp.moves.length}× back and forth; clients in host 2's netns (ms)`);
  out.push(`${''.padEnd(42)}${'median'.padStart(8)}${'min'.padStart(8)}${'max'.padStart(8)}`);
  const frow = (label: string, x: Stats | undefined): void => {
    out.push(`${label.padEnd(42)}${cell(x?.median, 0, 8)}${cell(x?.min, 0, 8)}${cell(x?.max, 0, 8)}`);
  };
  const f = s.firstPacketMs;
  frow('freeze (migration report)', f.freeze);
  frow('one connection: client-visible gap', f.gap);
  frow('one connection: restore end → first answer', f.restoreEndToFirst);
  frow('one connection: switch end → first answer', f.switchEndToFirst);
  frow('fresh connections: gap', f.freshGap);
  frow('fresh connections: restore end → first', f.freshRestoreEndToFirst);
  frow('fresh connections: switch end → first', f.freshSwitchEndToFirst);
  out.push('  (restore end = the Migration entered Switch; switch end = it entered Cleanup, the processes run again; a negative figure: the answer came first.');
  out.push('   One connection\'s first answer can wait for its client\'s TCP retransmission timer, backed off during the freeze; fresh connections do not:');
  out.push('   where both agree, the wait is on the container\'s side.)');
  out.push('');
  out.push('raw:');
  out.push(`  throughput host, Gbit/s:      ${list(r.throughput.host.runs.map((x) => x.bitsPerSec / 1e9), 2)}`);
  out.push(`  throughput container, Gbit/s: ${list(r.throughput.container.runs.map((x) => x.bitsPerSec / 1e9), 2)}`);
  out.push(`  RTT host p50/p99, µs:         ${r.latency.host.runs.map((x) => `${x.p50.toFixed(0)}/${x.p99.toFixed(0)}`).join(' ') || '-'}`);
  out.push(`  RTT container p50/p99, µs:    ${r.latency.container.runs.map((x) => `${x.p50.toFixed(0)}/${x.p99.toFixed(0)}`).join(' ') || '-'}`);
  for (const mv of fp.moves) {
    out.push(`  move ${mv.from} → ${mv.to} (client on the ${mv.clientOn}): freeze ${mv.freezeMs.toFixed(0)}, total ${mv.totalMs.toFixed(0)}, gap ${mv.gapMs.toFixed(0)}, restore end → first ${mv.restoreEndToFirstMs.toFixed(0)}, switch end → first ${mv.switchEndToFirstMs.toFixed(0)}; fresh: gap ${mv.fresh.gapMs.toFixed(0)}, restore end → first ${mv.fresh.restoreEndToFirstMs.toFixed(0)}, switch end → first ${mv.fresh.switchEndToFirstMs.toFixed(0)}`);
  }
  const errors = [
    ...r.throughput.host.errors.map((e) => `throughput host: ${e}`), ...r.throughput.container.errors.map((e) => `throughput container: ${e}`),
    ...r.latency.host.errors.map((e) => `latency host: ${e}`), ...r.latency.container.errors.map((e) => `latency container: ${e}`),
    ...fp.errors,
  ];
  for (const e of errors) out.push(`ERROR ${e}`);
  if (failure) out.push(`STOPPED ${failure}`);
  return out.join('\n');
}
