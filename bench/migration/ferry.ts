/**
 * Ferry's side of bench/migration: a fresh container of the workload on one node, migrated to the
 * other through the API with one strategy; the finished Migration's own figures (freeze, total,
 * bytes). A request the API refuses, or a migration that does not succeed, is an outcome with its
 * message, never a number.
 */
import { FerryError } from '../../src/errors/index.ts';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ContainerView, Migration } from '../../src/model/index.ts';
import type { TestFerry } from '../../test/support/ferry.ts';
import { waitResident, workloadEnv } from './host.ts';

/** A strategy the API accepts in a migration request. */
export type Strategy = 'stop-copy' | 'pre-copy' | 'post-copy';

/** One Ferry migration: its figures, or why there are none. */
export type FerryOutcome =
  | { ok: true; freezeMs: number; totalMs: number; bytes: number; strategy: string; phaseMs: Record<string, number>; laps: string[] }
  | { ok: false; error: string };

/** What the workload is and where it moves. */
export interface FerryMove {
  name: string;
  from: string;
  to: string;
  sizeMiB: number;
  dirtyPct: number;
  strategy: Strategy;
  /** Called once the container runs with its whole ballast, before it moves (the peers copy its bundle). */
  onRunning?: (v: ContainerView) => void;
}

/** Longest a migration request may block; below undici's 300 s header timeout. */
const WAIT_MS = 280_000;

/** Runs the workload through Ferry, migrates it once with `m.strategy`, and removes it. */
export async function migrateWithFerry(f: TestFerry, m: FerryMove): Promise<FerryOutcome> {
  try {
    const v = await f.client.containers.create({ name: m.name, image: 'sample', env: workloadEnv(m.sizeMiB, m.dirtyPct), node: m.from }, { wait: true });
    if (v.status?.phase !== 'running') return { ok: false, error: `the workload did not start: ${v.status?.phase ?? 'pending'} ${v.status?.message ?? ''}` };
    await waitResident(v.status.pid, m.sizeMiB);
    m.onRunning?.(v);
    let mig: Migration;
    try {
      mig = await f.client.migrations.create({ container: m.name, to: m.to, strategy: m.strategy }, { wait: true, timeoutMs: WAIT_MS });
    } catch (e) {
      if (e instanceof FerryError) return { ok: false, error: `${e.status >= 500 && e.status !== 501 ? 'failed' : 'refused'} (${e.status} ${e.code}): ${e.message}` };
      throw e;
    }
    const s = mig.status;
    if (s.phase !== 'Succeeded') return { ok: false, error: `${s.phase}${s.failedIn ? ` in ${s.failedIn}` : ''}: ${s.error ?? 'no error given'}` };
    const after = await f.client.containers.get(m.name);
    if (after.status?.node !== m.to || after.status.phase !== 'running') {
      return { ok: false, error: `the migration succeeded but the container is ${after.status?.phase ?? 'pending'} on ${after.status?.node ?? 'no node'}` };
    }
    if (s.freezeMs === undefined || s.totalMs === undefined) return { ok: false, error: 'the migration succeeded without freezeMs/totalMs in its status' };
    // How long each phase lasted, from the history's timestamps (the last phase has no end), summed over its entries (Copy has one per round).
    const phaseMs: Record<string, number> = {};
    s.history.slice(0, -1).forEach((h, i) => { phaseMs[h.phase] = (phaseMs[h.phase] ?? 0) + Date.parse(s.history[i + 1]!.at) - Date.parse(h.at); });
    return { ok: true, freezeMs: s.freezeMs, totalMs: s.totalMs, bytes: s.bytes, strategy: s.strategy, phaseMs, laps: lapsOf(f.home, mig.metadata.name) };
  } finally {
    await f.client.containers.remove(m.name, { wait: true, force: true }).catch(() => undefined);
  }
}

/** The agents' and the manager's timed steps of migration `id` in the freeze (their logs' lap lines), for the report's notes. */
function lapsOf(home: string, id: string): string[] {
  const dir = join(home, 'logs');
  const lines = readdirSync(dir).flatMap((n) => readFileSync(join(dir, n), 'utf8').split('\n'));
  return lines.filter((l) => l.includes(`migration ${id}: `) && /frozen and dumped|restored|continues:|switched|round \d+ of|made flat/.test(l)).sort().map((l) => l.replace(/^\S+ migration \S+ /, ''));
}
