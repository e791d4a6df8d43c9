/**
 * Restore → first packet: the sample app's line echo on host 1, a client in host 2's network
 * namespace holding one TCP connection and stamping every answer (line-probe.mjs), and the container
 * migrated stop-copy back and forth between the hosts. Per move: the client-visible gap (last answer
 * before → first answer after), and the first answer after measured from the Migration's own phase
 * timestamps — the end of Restore (entering Switch) and the end of Switch (entering Cleanup; the
 * restored processes were let go during Switch). Same wall clock on both sides: one machine.
 * The old connection's first answer waits for its client's retransmission timer (backed off during
 * the freeze), so a second client (connect-probe.mjs) opens a fresh connection every 10 ms beside it:
 * its first answer after the move is when the app on the new host is reachable at all.
 */
import { fileURLToPath } from 'node:url';
import type { ContainerView, Migration } from '../../src/model/index.ts';
import { running, type BenchCluster, type SimNode } from './cluster.ts';
import { NetnsProcess, closing } from './netns-process.ts';

const LINE_PROBE = fileURLToPath(new URL('./line-probe.mjs', import.meta.url));
const CONNECT_PROBE = fileURLToPath(new URL('./connect-probe.mjs', import.meta.url));
/** The line probe waits this long after an answer before the next line (its time resolution). */
const LINE_INTERVAL_MS = 2;
/** The connect probe opens a connection this often, and gives each this long to answer. */
const CONNECT_EVERY_MS = 10;
const CONNECT_TIMEOUT_MS = 1000;

/** One move of the echo container. */
export interface Move {
  from: string;
  to: string;
  /** Whether the client sat on the target host (the container came to it) or on the source. */
  clientOn: 'target' | 'source';
  /** From the Migration's status. */
  freezeMs: number;
  totalMs: number;
  /** Last answer before the move → first answer after it, as the client saw it. */
  gapMs: number;
  /** End of Restore (the Migration entered Switch) → the first answer after the move. */
  restoreEndToFirstMs: number;
  /** End of Switch (the Migration entered Cleanup) → the first answer after the move; negative when the answer came first. */
  switchEndToFirstMs: number;
  lastAnswerBefore: string;
  firstAnswerAfter: string;
  /** The same three for fresh connections (connect-probe.mjs): last answer before → first after, and from the phase ends. */
  fresh: { gapMs: number; restoreEndToFirstMs: number; switchEndToFirstMs: number };
  history: Migration['status']['history'];
}

/** The moves measured, and the ones that failed with why. */
export interface FirstPacketResult {
  moves: Move[];
  errors: string[];
}

/** The answer times a probe printed (epoch ms). */
const answers = (p: NetnsProcess): number[] => p.lines.filter((l) => !l.startsWith('{')).map(Number);
const lastAnswer = (p: NetnsProcess): number => {
  const l = p.lines.at(-1);
  return l === undefined || l.startsWith('{') ? 0 : Number(l);
};

/** Waits for `p`'s first answer after `t`; returns it and the answer before it. */
async function around(p: NetnsProcess, t: number, what: string): Promise<{ before: number; after: number }> {
  await p.until(what, () => (lastAnswer(p) > t ? true : undefined), 60_000);
  const times = answers(p);
  const i = times.findIndex((x) => x > t);
  if (i < 1) throw new Error(`${what}: the probe has no answer before the move`);
  return { before: times[i - 1]!, after: times[i]! };
}

/** Runs `reps` stop-copy moves of an echo container between `a` and `b`, the clients in `b`'s network namespace. */
export async function measureFirstPacket(c: BenchCluster, a: SimNode, b: SimNode, reps: number, echoPort: number, note: (s: string) => void): Promise<FirstPacketResult> {
  const out: FirstPacketResult = { moves: [], errors: [] };
  const name = 'echo';
  await c.ok(['run', '--name', name, '--node', a.name, '-e', `ECHO_PORT=${echoPort}`, 'sample']);
  const ip = (await running(c, name)).status.ip;
  const probes: { line?: NetnsProcess; fresh?: NetnsProcess } = {};
  const connect = async (script: string, args: number[]): Promise<NetnsProcess> => {
    const p = new NetnsProcess(`/run/netns/${b.netns}`, [process.execPath, script, ip, String(echoPort), ...args.map(String)]);
    await p.until(`${script.split('/').at(-1)} to get 20 answers`, () => (p.lines.length >= 20 ? true : undefined), 30_000);
    return p;
  };
  try {
    let at = a;
    for (let rep = 0; rep < reps && !closing(); rep++) {
      const to = at === a ? b : a;
      const label = `move ${rep + 1}/${reps} ${at.name} → ${to.name}`;
      try {
        if (!probes.line?.alive) probes.line = await connect(LINE_PROBE, [LINE_INTERVAL_MS]);
        if (!probes.fresh?.alive) probes.fresh = await connect(CONNECT_PROBE, [CONNECT_EVERY_MS, CONNECT_TIMEOUT_MS]);
        const { line, fresh } = probes;
        const m = await c.json<Migration>(['migrate', name, '--to', to.name, '--strategy', 'stop-copy']);
        const s = m.status;
        if (s.phase !== 'Succeeded') throw new Error(`the migration ended ${s.phase}${s.failedIn ? ` in ${s.failedIn}` : ''}: ${s.error ?? ''}`);
        at = to;
        const when = (phase: string): number => {
          const h = s.history.find((x) => x.phase === phase);
          if (!h) throw new Error(`the migration's history has no ${phase}: ${s.history.map((x) => x.phase).join(' → ')}`);
          return Date.parse(h.at);
        };
        const restoreEnd = when('Switch');
        const switchEnd = when('Cleanup');
        // Nothing answers between the freeze and the end of Restore: the first answer past it is the first after the move.
        const l = await around(line, restoreEnd, `${label}: the old connection's first answer after the move`);
        const f = await around(fresh, restoreEnd, `${label}: a fresh connection's first answer after the move`);
        const move: Move = {
          from: m.spec.from, to: m.spec.to, clientOn: to === b ? 'target' : 'source',
          freezeMs: s.freezeMs ?? NaN, totalMs: s.totalMs ?? NaN,
          gapMs: l.after - l.before, restoreEndToFirstMs: l.after - restoreEnd, switchEndToFirstMs: l.after - switchEnd,
          lastAnswerBefore: new Date(l.before).toISOString(), firstAnswerAfter: new Date(l.after).toISOString(),
          fresh: { gapMs: f.after - f.before, restoreEndToFirstMs: f.after - restoreEnd, switchEndToFirstMs: f.after - switchEnd },
          history: s.history,
        };
        out.moves.push(move);
        note(`${label}: freeze ${move.freezeMs.toFixed(0)} ms; old connection: gap ${move.gapMs.toFixed(0)}, restore end → first answer ${move.restoreEndToFirstMs.toFixed(0)}, switch end → first ${move.switchEndToFirstMs.toFixed(0)}; fresh connections: gap ${move.fresh.gapMs.toFixed(0)}, restore end → first ${move.fresh.restoreEndToFirstMs.toFixed(0)}, switch end → first ${move.fresh.switchEndToFirstMs.toFixed(0)} (ms)`);
        // Let the flow settle before the next move.
        const settled = Math.max(l.after, f.after) + 500;
        await line.until(`${label}: lines to flow again`, () => (lastAnswer(line) > settled ? true : undefined), 30_000);
      } catch (e) {
        const msg = `${label}: ${e instanceof Error ? e.message : String(e)}`;
        out.errors.push(msg);
        note(`FAILED ${msg}`);
        if (closing()) break;
        const v = await c.json<ContainerView>(['inspect', name]).catch(() => undefined);
        if (v?.status?.node === b.name) at = b;
        else if (v?.status?.node === a.name) at = a;
        await probes.line?.stop();
        await probes.fresh?.stop();
      }
    }
  } finally {
    await probes.line?.stop();
    await probes.fresh?.stop();
    await c.ok(['rm', '-f', name]).catch(() => undefined);
  }
  return out;
}
