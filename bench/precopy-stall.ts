/**
 * bench/precopy-stall: what a client sees during a pre-copy migration. A client asks the sample
 * app's counter every 10 ms (one request per connection, as test/support/http-poller.mjs does) while
 * the workload (a ballast of --size MiB, --dirty-pct % of it rewritten per second) moves between two
 * agents on this machine, once with the write tracker (rounds read from the running processes) and
 * once with `FERRY_DIRTY_TRACK=0` on both agents — Ferry's pre-copy as it was before, whose every
 * round is a CRIU `--leave-running` dump that pauses the container — in the same run, by turns.
 * Prints, per run: the longest wait between two answers while the rounds were copied (from the
 * Copy phase's start to the Freeze's), the requests that failed before the freeze, and the freeze
 * itself (from the Migration's status: the container answers at another address afterwards, as the
 * agents here are two node-local networks, so the client cannot follow it); and the ratios.
 *
 *   node --import tsx bench/precopy-stall.ts [--size 1024] [--dirty-pct 1] [--reps 2] [-o json]
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, startFerry, teardownFerry } from '../test/support/ferry.ts';
import { waitResident, warmHostMemory, workloadEnv } from './migration/host.ts';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '1024' },
    'dirty-pct': { type: 'string', default: '1' },
    reps: { type: 'string', default: '2' },
    o: { type: 'string', short: 'o', default: 'table' },
  },
});
const [sizeMiB, dirtyPct, reps] = [Number(values.size), Number(values['dirty-pct']), Number(values.reps)];
const usage = [
  (!Number.isInteger(sizeMiB) || sizeMiB <= 0) && '--size takes MiB, e.g. 1024',
  (!Number.isInteger(dirtyPct) || dirtyPct < 0) && '--dirty-pct takes a whole percentage per second',
  (!Number.isInteger(reps) || reps < 1) && '--reps takes a count ≥ 1',
  !['table', 'json'].includes(values.o) && '-o takes table or json',
].filter(Boolean);
if (usage.length > 0) {
  console.error(`bench/precopy-stall: ${usage.join('; ')}`);
  process.exit(2);
}
const note = (s: string): void => { process.stderr.write(`# ${s}\n`); };

type Mode = 'tracked' | 'dumped';
interface Run {
  mode: Mode;
  ok: boolean;
  error?: string;
  freezeMs?: number;
  totalMs?: number;
  rounds?: number;
  /** Longest time between two answers while rounds were copied. */
  copyGapMs?: number;
  /** Answers, and failed requests, before the freeze. */
  answers?: number;
  failed?: number;
}

/** One migration of a fresh workload with a client polling it; the agents' environment sets the mode. */
async function measure(mode: Mode, rep: number): Promise<Run> {
  const env: Record<string, string> = mode === 'dumped' ? { FERRY_DIRTY_TRACK: '0' } : {};
  const f = await startFerry({ env });
  let poller: ReturnType<typeof spawn> | undefined;
  try {
    const b = await f.addAgent(env);
    const name = `stall-${mode}-${rep}`;
    warmHostMemory(sizeMiB);
    const v = await f.client.containers.create({ name, image: 'sample', env: workloadEnv(sizeMiB, dirtyPct), node: f.node }, { wait: true });
    if (v.status?.phase !== 'running' || !v.status.ip) return { mode, ok: false, error: `the workload did not start: ${v.status?.phase ?? 'pending'}` };
    await waitResident(v.status.pid!, sizeMiB);
    const answers: number[] = [];
    const failures: number[] = [];
    poller = spawn(process.execPath, [join(ROOT, 'test', 'support', 'http-poller.mjs'), v.status.ip, '80', '10'], { stdio: ['ignore', 'pipe', 'inherit'] });
    createInterface({ input: poller.stdout! }).on('line', (l) => {
      const e = JSON.parse(l) as { count?: number; error?: string };
      if (typeof e.count === 'number') answers.push(Date.now());
      else if (e.error) failures.push(Date.now());
    });
    const exited = new Promise((r) => poller!.on('close', r));
    while (answers.length < 20) await new Promise((r) => setTimeout(r, 20));
    const m = await f.client.migrations.create({ container: name, to: b.node, strategy: 'pre-copy' }, { wait: true, timeoutMs: 280_000 });
    await new Promise((r) => setTimeout(r, 500));
    poller.kill('SIGTERM');
    await exited;
    poller = undefined;
    const s = m.status;
    if (s.phase !== 'Succeeded') return { mode, ok: false, error: `${s.phase}: ${s.error ?? ''}` };
    const at = (phase: string): number => Date.parse(s.history.find((h) => h.phase === phase)!.at);
    const [copy, freeze] = [at('Copy'), at('Freeze')];
    const gap = (from: number, to: number): number => {
      const inside = answers.filter((t) => t >= from && t <= to);
      const before = answers.filter((t) => t < from).at(-1);
      const after = answers.find((t) => t > to);
      const ts = [...(before !== undefined ? [before] : []), ...inside, ...(after !== undefined ? [after] : [])];
      return ts.slice(1).reduce((g, t, i) => Math.max(g, t - ts[i]!), 0);
    };
    return {
      mode, ok: true, freezeMs: s.freezeMs, totalMs: s.totalMs, rounds: s.round,
      copyGapMs: gap(copy, freeze), answers: answers.filter((t) => t < freeze).length, failed: failures.filter((t) => t < freeze).length,
    };
  } catch (e) {
    return { mode, ok: false, error: (e as Error).message };
  } finally {
    if (poller) { poller.kill('SIGTERM'); }
    const left = await teardownFerry(f);
    if (left.length > 0) note(`teardown had to remove: ${left.join(', ')}`);
  }
}

const runs: Run[] = [];
for (let rep = 0; rep < reps; rep++) {
  for (const mode of ['tracked', 'dumped'] as const) {
    note(`${mode}, rep ${rep + 1} of ${reps}: ${sizeMiB} MiB, ${dirtyPct} %/s`);
    const r = await measure(mode, rep);
    note(JSON.stringify(r));
    runs.push(r);
  }
}
const median = (xs: number[]): number | undefined => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? undefined : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const of = (mode: Mode, k: 'freezeMs' | 'copyGapMs'): number | undefined => median(runs.filter((r) => r.ok && r.mode === mode).map((r) => r[k]!));
const summary = Object.fromEntries((['freezeMs', 'copyGapMs'] as const).map((k) => {
  const [t, d] = [of('tracked', k), of('dumped', k)];
  return [k, { tracked: t, dumped: d, ratio: t !== undefined && d !== undefined && t > 0 ? d / t : undefined }];
}));
if (values.o === 'json') {
  console.log(JSON.stringify({ sizeMiB, dirtyPct, reps, runs, summary }, null, 2));
} else {
  console.log(`pre-copy, ${sizeMiB} MiB, ${dirtyPct} %/s dirtied, a client asking every 10 ms; medians of ${reps} (ms)`);
  console.log('| | write tracker (rounds read while it runs) | FERRY_DIRTY_TRACK=0 (rounds are dumps) | ratio dumped/tracked |');
  console.log('|---|---|---|---|');
  const fmt = (x: number | undefined): string => (x === undefined ? '-' : String(Math.round(x)));
  for (const [k, label] of [['copyGapMs', 'longest wait for an answer while the rounds were copied'], ['freezeMs', 'freeze']] as const) {
    const s = summary[k]!;
    console.log(`| ${label} | ${fmt(s.tracked)} | ${fmt(s.dumped)} | ${s.ratio === undefined ? '-' : s.ratio.toFixed(2)} |`);
  }
  console.log('\nraw:');
  for (const r of runs) console.log(r.ok ? `  ${r.mode}: freeze ${r.freezeMs}, total ${r.totalMs}, rounds ${r.rounds}, longest wait while rounds were copied ${r.copyGapMs}; before the freeze ${r.answers} answers, ${r.failed} failed requests` : `  ${r.mode}: ${r.error}`);
}
if (runs.some((r) => !r.ok)) process.exitCode = 1;
