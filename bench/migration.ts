/**
 * bench/migration: live migration of the sample app holding a ballast of 64 MiB–1 GiB with a share of
 * it rewritten every second, between two agents on this machine, per strategy (freeze, total, bytes
 * from the Migration's status), against two peers in the same run on the same workload: raw runc +
 * CRIU stop-and-copy of Ferry's own bundle, and Podman's checkpoint --export / restore --import.
 * A strategy the API refuses is shown with the API's message. Prints a table per size, ratios, the
 * issue's targets (met / NOT met) and the raw figures; `-o json` prints all of it as JSON.
 *
 *   node --import tsx bench/migration.ts [--sizes 64,256,1024] [--strategies stop-copy,post-copy,pre-copy]
 *                                        [--dirty-pct 1] [--reps 1] [-o json]
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, startFerry, teardownFerry } from '../test/support/ferry.ts';
import type { ContainerView } from '../src/model/index.ts';
import { migrateWithFerry, type Strategy } from './migration/ferry.ts';
import { ensurePodman, PodmanPeer } from './migration/podman.ts';
import { RawCriuPeer, type BundleConfig } from './migration/raw-criu.ts';
import { warmHostMemory } from './migration/host.ts';
import { judgeTargets, ratiosOf, renderText, type Series, type SizeResult } from './migration/report.ts';

const CRIU = '/opt/ferry/bin/criu';
const SHIM = join(ROOT, 'build/ferry-shim');
const STRATEGIES: readonly Strategy[] = ['stop-copy', 'post-copy', 'pre-copy'];

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '64,256,1024' },
    strategies: { type: 'string', default: STRATEGIES.join(',') },
    'dirty-pct': { type: 'string', default: '1' },
    reps: { type: 'string', default: '1' },
    o: { type: 'string', short: 'o', default: 'table' },
  },
});
const sizes = values.sizes.split(',').map(Number);
const strategies = values.strategies.split(',') as Strategy[];
const dirtyPct = Number(values['dirty-pct']);
const reps = Number(values.reps);
const usage = [
  sizes.some((s) => !Number.isInteger(s) || s <= 0) && '--sizes takes MiB counts, e.g. 64,256,1024',
  strategies.some((s) => !STRATEGIES.includes(s)) && `--strategies takes ${STRATEGIES.join(', ')}`,
  (!Number.isInteger(dirtyPct) || dirtyPct < 0) && '--dirty-pct takes a whole percentage per second',
  (!Number.isInteger(reps) || reps < 1) && '--reps takes a count ≥ 1',
  !['table', 'json'].includes(values.o) && '-o takes table or json',
].filter(Boolean);
if (usage.length > 0) {
  console.error(`bench/migration: ${usage.join('; ')}`);
  process.exit(2);
}

/** Progress on stderr, so `-o json` keeps stdout clean. */
const note = (s: string): void => { process.stderr.write(`# ${s}\n`); };
const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** The workload size being measured (what warmHostMemory touches before each measurement). */
let currentSizeMiB = 64;

/** Runs `fn`, adding its result to `s`, or its error message. */
async function measure<T>(s: Series<T>, label: string, fn: () => Promise<T>): Promise<void> {
  try {
    // Every peer starts with warm host memory (see warmHostMemory): 8× the workload's size, about what
    // the hungriest uses (pre-copy: the workload, the rounds' full dumps on the source's tmpfs and the
    // flat image on the target's, the restored copy). With 4× the 1 GiB pre-copy restore met cold
    // memory and took 3.3–3.6 s; with 8×, 1.1 s (stop-copy's 1.0 s, raw CRIU's 0.9 s).
    warmHostMemory(8 * currentSizeMiB);
    // That held this process for seconds: let it see the sockets the manager closed meanwhile (idle
    // keep-alive), or the next request goes out on one of them and fails with UND_ERR_SOCKET.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const r = await fn();
    s.runs.push(r);
    note(`${label}: ${JSON.stringify(r, (_k, v: unknown) => (typeof v === 'number' ? Math.round(v) : v))}`);
  } catch (e) {
    s.errors.push(message(e));
    note(`${label}: FAILED ${message(e)}`);
  }
}

let podmanNote = ensurePodman();
const f = await startFerry();
const work = mkdtempSync(join(tmpdir(), `ferry-bench-migration-${f.id}-`));
chmodSync(work, 0o755); // the user namespace's root must reach the raw peer's bundles below it
for (const d of ['raw', 'podman']) mkdirSync(join(work, d));
const raw = new RawCriuPeer(join(work, 'raw'), `${f.id}b`, SHIM, CRIU);
const podman = podmanNote ? undefined : new PodmanPeer(join(work, 'podman'), `${f.id}b`, CRIU);
const results: SizeResult[] = [];
let failure: unknown;
try {
  const a = f.agents[0]!;
  const b = await f.addAgent();
  try {
    podman?.importImage(join(f.home, 'agents', a.node, 'images'));
  } catch (e) {
    podmanNote = `the sample image could not be put into Podman: ${message(e)}`;
  }
  let rootfsCopied = false;
  for (const sizeMiB of sizes) {
    const r: SizeResult = { sizeMiB, ferry: {}, rawCriu: { runs: [], errors: [] }, podman: { runs: [], errors: [] } };
    results.push(r);
    let config: BundleConfig | undefined;
    // The first Ferry container of this size lends its bundle to the raw CRIU peer.
    const lendBundle = (v: ContainerView): void => {
      if (config || !v.status) return;
      config = JSON.parse(readFileSync(join(f.home, 'agents', v.status.node, 'runtime', v.status.runtimeId, 'config.json'), 'utf8')) as BundleConfig;
      if (!rootfsCopied) raw.prepareRootfs(config.root.path);
      rootfsCopied = true;
    };
    currentSizeMiB = sizeMiB;
    for (let rep = 0; rep < reps; rep++) {
      const ferryRuns = async (): Promise<void> => {
        for (const strategy of strategies) {
          const s = (r.ferry[strategy] ??= { runs: [], errors: [] });
          const label = `${sizeMiB} MiB rep ${rep + 1} Ferry ${strategy}`;
          await measure(s, label, async () => {
            const out = await migrateWithFerry(f, { name: `m${sizeMiB}-${strategy}-${rep}`, from: a.node, to: b.node, sizeMiB, dirtyPct, strategy, onRunning: lendBundle });
            if (!out.ok) throw new Error(out.error);
            note(`  phases (ms): ${Object.entries(out.phaseMs).map(([k, v]) => `${k} ${v}`).join(', ')}`);
            for (const l of out.laps) note(`  ${l}`);
            return { freezeMs: out.freezeMs, totalMs: out.totalMs, dumpMs: out.phaseMs.Freeze, restoreMs: out.phaseMs.Restore, bytes: out.bytes };
          });
        }
      };
      const peerRuns = async (): Promise<void> => {
        await measure(r.rawCriu, `${sizeMiB} MiB rep ${rep + 1} raw CRIU`, () => {
          if (!config) throw new Error('no Ferry-made bundle to copy: no Ferry workload of this size ran');
          return raw.migrate(config, sizeMiB, `s${sizeMiB}r${rep}`);
        });
        await measure(r.podman, `${sizeMiB} MiB rep ${rep + 1} Podman`, () => {
          if (!podman) throw new Error(podmanNote ?? 'Podman is not available');
          return podman.migrate(sizeMiB, dirtyPct, `s${sizeMiB}r${rep}`);
        });
      };
      // Who goes first alternates by repetition (the raw CRIU peer needs a Ferry-made bundle, so Ferry
      // starts): the host's memory warms up over a run, and the first in line always met it colder.
      if (rep % 2 === 0) {
        await ferryRuns();
        await peerRuns();
      } else {
        await peerRuns();
        await ferryRuns();
      }
    }
  }
} catch (e) {
  failure = e;
} finally {
  const left = [...raw.cleanup(), ...(podman?.cleanup() ?? []), ...(await teardownFerry(f))];
  rmSync(work, { recursive: true, force: true });
  if (left.length > 0) console.error(`cleanup found leftovers: ${left.join('; ')}`);
}
if (failure) {
  console.error(`bench/migration stopped: ${failure instanceof Error ? failure.stack : String(failure)}`);
  process.exitCode = 1;
}
const targets = judgeTargets(results, strategies, dirtyPct);
if (values.o === 'json') {
  console.log(JSON.stringify({ sizesMiB: sizes, strategies, dirtyPctPerSec: dirtyPct, reps, podmanNote, results, ratios: results.map(ratiosOf), targets }, null, 2));
} else {
  console.log(renderText(results, { reps, dirtyPct, targets, ...(podmanNote ? { podmanNote } : {}) }));
}
