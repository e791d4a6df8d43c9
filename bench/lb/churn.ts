/**
 * The churn phase's steps, under the continuous load, each marked as a phase on it: a steady spell,
 * live migrations of the service's replicas one at a time (the direction alternating between the two
 * hosts), scale 3 → 1, migrations of the only replica (held at the entry point), scale 1 → 5, a
 * rolling update, and a steady spell after.
 */
import { activeReplicas, migrate, revisionOf, settled, type LbCluster, type SimNode } from './cluster.ts';
import type { ChurnLoad } from './load.ts';

/** One live migration as the bench saw it. */
export interface MigrationRecord {
  replica: string;
  from: string;
  to: string;
  /** The Migration's final phase (Succeeded, RolledBack, Failed), or `error` when the CLI printed none. */
  phase: string;
  strategy?: string;
  freezeMs?: number;
  totalMs?: number;
  /** Wall time of the CLI call, ms. */
  wallMs: number;
  /** Time in each phase, ms, from the Migration's history (a phase entered twice adds up). */
  phaseMs?: Record<string, number>;
  /** The Migration's history as it ended. */
  history?: { phase: string; at: string; message?: string }[];
  error?: string;
  /** The replica was the service's only one: the entry point held its requests through the freeze. */
  held?: boolean;
}

/** Time spent in each phase of a history, ms: from entering it to entering the next. */
export function phaseDurations(history: readonly { phase: string; at: string }[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i + 1 < history.length; i++) {
    const h = history[i]!;
    out[h.phase] = (out[h.phase] ?? 0) + (Date.parse(history[i + 1]!.at) - Date.parse(h.at));
  }
  return out;
}

/** What the churn did. */
export interface ChurnSteps {
  migrations: MigrationRecord[];
  /** The other steps: what, how long (ms), and its error if it failed. */
  steps: { name: string; ms: number; error?: string }[];
}

/** What the churn needs from the bench. */
export interface ChurnOptions {
  readonly service: string;
  readonly replicas: number;
  readonly migrations: number;
  /** Migrations of the service's only replica (after the scale to 1): requests held through each freeze. */
  readonly heldMigrations: number;
  readonly strategy: string;
  readonly settleMs: number;
  readonly note: (s: string) => void;
  /** Throws once the run was asked to stop. */
  readonly checkpoint: () => void;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** Runs the steps on `c` while `load` runs; a failed step is recorded and the next one still runs. */
export async function runChurn(c: LbCluster, load: ChurnLoad, o: ChurnOptions): Promise<ChurnSteps> {
  const out: ChurnSteps = { migrations: [], steps: [] };
  const [h1, h2] = c.nodes as [SimNode, SimNode];
  const step = async (name: string, fn: () => Promise<void>): Promise<void> => {
    o.checkpoint();
    load.mark(name);
    const t0 = Date.now();
    try {
      await fn();
      out.steps.push({ name, ms: Date.now() - t0 });
      o.note(`${name}: done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    } catch (e) {
      out.steps.push({ name, ms: Date.now() - t0, error: message(e) });
      o.note(`${name}: FAILED ${message(e)}`);
    }
    // The aftermath (drains, checks catching up) counts in the step's phase.
    await sleep(o.settleMs);
  };

  await step('steady before', async () => undefined);
  /** `n` live migrations, one at a time, the direction alternating; the least-moved replica goes first. */
  const migrateReplicas = async (n: number, replicas: number): Promise<void> => {
    const moved = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      o.checkpoint();
      const [from, to] = i % 2 === 0 ? [h1, h2] : [h2, h1];
      const rs = (await activeReplicas(c, o.service)).filter((r) => r.phase === 'running' && r.node);
      // The least-moved replica on the source host; when it has none, any replica goes the other way.
      const pool = rs.some((r) => r.node === from.name) ? rs.filter((r) => r.node === from.name) : rs;
      const r = [...pool].sort((a, b) => (moved.get(a.name) ?? 0) - (moved.get(b.name) ?? 0) || a.name.localeCompare(b.name))[0];
      if (!r) throw new Error(`no running replica of ${o.service} to move`);
      const target = r.node === from.name ? to : r.node === h1.name ? h2 : h1;
      moved.set(r.name, (moved.get(r.name) ?? 0) + 1);
      const t0 = Date.now();
      let rec: MigrationRecord;
      try {
        const m = await migrate(c, r.name, target.name, o.strategy);
        rec = {
          replica: r.name, from: r.node!, to: target.name, phase: m.status.phase, strategy: m.status.strategy, wallMs: Date.now() - t0,
          phaseMs: phaseDurations(m.status.history), history: m.status.history, held: replicas === 1,
          ...(m.status.freezeMs !== undefined ? { freezeMs: m.status.freezeMs } : {}), ...(m.status.totalMs !== undefined ? { totalMs: m.status.totalMs } : {}),
          ...(m.status.phase !== 'Succeeded' ? { error: m.status.error ?? m.status.history.at(-1)?.message ?? m.status.phase } : {}),
        };
      } catch (e) {
        rec = { replica: r.name, from: r.node!, to: target.name, phase: 'error', wallMs: Date.now() - t0, error: message(e), held: replicas === 1 };
      }
      out.migrations.push(rec);
      o.note(`migration ${i + 1}/${n}${replicas === 1 ? ' (only replica: held)' : ''}: ${rec.replica} ${rec.from} → ${rec.to} ${rec.phase}${rec.strategy ? ` (${rec.strategy})` : ''}, freeze ${rec.freezeMs?.toFixed(0) ?? '-'} ms, total ${rec.totalMs?.toFixed(0) ?? '-'} ms${rec.error ? `: ${rec.error}` : ''}`);
      // After a failure, wait for the service to be whole again before the next move.
      if (rec.phase !== 'Succeeded') await settled(c, o.service, replicas, undefined, 60_000).catch((e: unknown) => o.note(`after the failed migration: ${message(e)}`));
    }
  };

  await step(`${o.migrations} live migrations`, () => migrateReplicas(o.migrations, o.replicas));
  await step(`scale ${o.replicas}→1`, async () => {
    await c.ok(['service', 'scale', o.service, '1', '--wait']);
    await settled(c, o.service, 1);
  });
  // The only replica moving: its requests are held at the entry point through each freeze (no sibling to take them).
  if (o.heldMigrations > 0) await step(`${o.heldMigrations} held migrations`, () => migrateReplicas(o.heldMigrations, 1));
  await step('scale 1→5', async () => {
    await c.ok(['service', 'scale', o.service, '5', '--wait']);
    await settled(c, o.service, 5);
  });
  await step('rolling update', async () => {
    const before = await revisionOf(c, o.service);
    await c.ok(['service', 'update', o.service, '-e', 'V=2', '--wait']);
    const after = await revisionOf(c, o.service);
    if (after === before) throw new Error(`the revision did not change (${before})`);
    await settled(c, o.service, 5, after);
  });
  await step('steady after', async () => undefined);
  load.end();
  return out;
}
