/**
 * The continuous load of the churn phase (http-load.mjs in host 2's namespace, every request logged
 * with its start time) and its reading: the bench marks phases by its own clock, and each request
 * counts in the phase it started in.
 */
import { readFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { NetnsProcess } from '../network/netns-process.ts';

/** One request as the load tool logged it. */
export interface Sample {
  /** Start, ms since the epoch. */
  at: number;
  latencyUs: number;
  status: number;
  /** `-` when it succeeded. */
  error: string;
  replica: string;
}

/** A span of the run with a name, by the bench's clock. */
export interface Phase {
  name: string;
  startMs: number;
  endMs: number;
  /** 1-minute load average at its start and end. */
  load: [number, number];
}

/** What a phase's requests show. */
export interface PhaseFigures {
  name: string;
  seconds: number;
  requests: number;
  failed: number;
  reqPerSec: number;
  latencyMs?: { p50: number; p99: number; p999: number; max: number };
  /** Failures by kind (status_503, ECONNRESET, TIMEOUT, …). */
  failures: Record<string, number>;
  /** The first few failures: when (ms into the phase) and what. */
  firstFailures: { atMs: number; error: string }[];
  /** Answers per replica. */
  replicas: Record<string, number>;
  load: [number, number];
}

/** A running load and the phases marked on it. */
export class ChurnLoad {
  readonly phases: Phase[] = [];
  private current: { name: string; startMs: number; load: number } | undefined;

  private constructor(readonly process: NetnsProcess, readonly file: string, readonly argv: readonly string[]) {}

  /** Starts the tool in `netnsPath` against `address:port` with `Host: host`; waits until it runs. */
  static async start(o: { netnsPath: string; dir: string; address: string; port: number; host: string; connections: number; paceMs: number }): Promise<ChurnLoad> {
    const file = join(o.dir, 'churn-requests.log');
    const argv = [process.execPath, join(import.meta.dirname, 'http-load.mjs'), '--address', o.address, '--port', String(o.port), '--host', o.host,
      '--connections', String(o.connections), '--pace-ms', String(o.paceMs), '--out', file];
    const p = new NetnsProcess(o.netnsPath, argv);
    await p.until('the load tool to start', () => (p.lines.some((l) => l.includes('"started"')) ? true : undefined), 10_000);
    return new ChurnLoad(p, file, argv);
  }

  /** Ends the phase in progress (if any) and starts `name`. */
  mark(name: string): void {
    this.end();
    this.current = { name, startMs: Date.now(), load: loadavg()[0]! };
  }

  /** Ends the phase in progress. */
  end(): void {
    const c = this.current;
    if (!c) return;
    this.phases.push({ name: c.name, startMs: c.startMs, endMs: Date.now(), load: [c.load, loadavg()[0]!] });
    this.current = undefined;
  }

  /** Stops the tool (it lets requests in flight finish) and reads every request it logged. */
  async stop(): Promise<{ samples: Sample[]; summary: string }> {
    this.end();
    await this.process.stop(15_000);
    const text = await readFile(this.file, 'utf8').catch(() => '');
    const samples: Sample[] = [];
    for (const line of text.split('\n')) {
      const [at, us, status, error, replica] = line.split(' ');
      if (replica === undefined) continue;
      samples.push({ at: Number(at), latencyUs: Number(us), status: Number(status), error: error!, replica });
    }
    return { samples, summary: this.process.lines.at(-1) ?? '' };
  }
}

/** The p-th percentile (0–100) of an ascending sample, nearest rank. */
function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** Figures of the requests that started in [startMs, endMs). */
export function figures(name: string, samples: readonly Sample[], startMs: number, endMs: number, load: [number, number]): PhaseFigures {
  const mine = samples.filter((s) => s.at >= startMs && s.at < endMs);
  const failed = mine.filter((s) => s.error !== '-');
  const failures: Record<string, number> = {};
  for (const f of failed) failures[f.error] = (failures[f.error] ?? 0) + 1;
  const replicas: Record<string, number> = {};
  for (const s of mine) if (s.error === '-') replicas[s.replica] = (replicas[s.replica] ?? 0) + 1;
  const lat = mine.map((s) => s.latencyUs / 1000).sort((a, b) => a - b);
  const seconds = (endMs - startMs) / 1000;
  return {
    name, seconds, requests: mine.length, failed: failed.length, reqPerSec: seconds > 0 ? mine.length / seconds : 0,
    ...(lat.length > 0 ? { latencyMs: { p50: pct(lat, 50), p99: pct(lat, 99), p999: pct(lat, 99.9), max: lat.at(-1)! } } : {}),
    failures, firstFailures: failed.slice(0, 5).map((f) => ({ atMs: Math.round(f.at - startMs), error: f.error })), replicas, load,
  };
}
