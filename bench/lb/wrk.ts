/**
 * One wrk run inside a host's network namespace: a fixed number of keep-alive connections, one
 * thread, requests as fast as answers come; its summary as JSON from a Lua `done` hook (requests,
 * errors by kind, latency percentiles in µs) instead of parsing wrk's text.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NetnsProcess } from '../network/netns-process.ts';

/** What one wrk run measured. */
export interface WrkRun {
  requests: number;
  durationUs: number;
  reqPerSec: number;
  /** Non-2xx/3xx answers, and socket errors by kind (timeout: no answer within wrk's --timeout). */
  errors: { status: number; connect: number; read: number; write: number; timeout: number };
  latencyUs: { mean: number; p50: number; p90: number; p99: number; p999: number; max: number };
}

const REPORT_LUA = `-- bench/lb: wrk's summary as one JSON line.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"durationUs":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latencyUs":{"mean":%.1f,"p50":%.0f,"p90":%.0f,"p99":%.0f,"p999":%.0f,"max":%.0f}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max))
end
`;

/** Writes the Lua report script into `dir`; returns its path. */
export async function writeWrkScript(dir: string): Promise<string> {
  const file = join(dir, 'wrk-report.lua');
  await writeFile(file, REPORT_LUA);
  return file;
}

/** What a run asks of wrk. */
export interface WrkOptions {
  /** Network namespace path the client runs in. */
  readonly netnsPath: string;
  readonly url: string;
  readonly host: string;
  readonly connections: number;
  readonly seconds: number;
  readonly script: string;
}

/** The wrk command line of a run (also shown in the report). */
export function wrkArgv(o: Omit<WrkOptions, 'netnsPath'>): string[] {
  return ['wrk', '-t1', `-c${o.connections}`, `-d${o.seconds}s`, '--timeout', '10s', '-H', `Host: ${o.host}`, '-s', o.script, o.url];
}

/** Runs wrk once and returns its summary. */
export async function wrkOnce(o: WrkOptions): Promise<WrkRun> {
  const p = new NetnsProcess(o.netnsPath, wrkArgv(o));
  const r = await p.result<Omit<WrkRun, 'reqPerSec'>>((o.seconds + 30) * 1000);
  return { ...r, reqPerSec: r.requests / (r.durationUs / 1e6) };
}

/** Failed requests of a run: non-2xx/3xx answers and socket errors of every kind. */
export function wrkFailures(r: WrkRun): number {
  const e = r.errors;
  return e.status + e.connect + e.read + e.write + e.timeout;
}
