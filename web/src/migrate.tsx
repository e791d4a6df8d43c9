/**
 * The migration panel of one container: can it move (the agent's migratable verdict, with reasons),
 * where to (other ready hosts by region, an LM badge on each that passes the prechecks), then
 * "Verify & Migrate": the prechecks for the chosen host first (a check-only migration), and only when
 * every check passes the migration itself, followed phase by phase to its report — or cancelled.
 */
import type { JSX } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import type { ContainerView, FerryClient, Migration, NodeView } from './api.ts';
import { ended, follow, nodeOf, passed, precheck, topology, why } from './api.ts';
import { bytes, ms } from './format.ts';

type Strategy = Migration['spec']['strategy'];
/** Per target: unknown, being checked, passed (LM), or failed with the first failing check. */
type Verdict = { state: 'checking' } | { state: 'ok' } | { state: 'no'; reason: string };

/** The phases a move goes through, for the progress line (post-/pre-copy add or skip some). */
const STEPS = ['Pending', 'Precheck', 'Prepare', 'Copy', 'Freeze', 'Transfer', 'Restore', 'Switch', 'Cleanup', 'Succeeded'];

/** Props: the container, the cluster's nodes, and how to tell the user that something ended. */
export interface MigratePanelProps {
  client: FerryClient;
  view: ContainerView;
  nodes: NodeView[];
  notify: (text: string, kind: 'ok' | 'bad') => void;
  close: () => void;
}

/** The panel (a drawer keyed by container: it stays while the container changes hosts). */
export function MigratePanel(p: MigratePanelProps): JSX.Element {
  const name = p.view.container.metadata.name;
  const from = nodeOf(p.view);
  const targets = p.nodes.filter((n) => n.node.metadata.name !== from && n.state === 'Ready' && !n.node.spec.unschedulable);
  const [to, setTo] = useState('');
  const [strategy, setStrategy] = useState<Strategy>('auto');
  const [verdicts, setVerdicts] = useState<Record<string, Verdict>>({});
  const [checks, setChecks] = useState<Migration | undefined>();
  const [move, setMove] = useState<Migration | undefined>();
  const [busy, setBusy] = useState<'verify' | 'migrate' | undefined>();
  const [error, setError] = useState<string | undefined>();
  // The choice stays only while it is still a possible target (after a move, the old target is home).
  const target = targets.some((t) => t.node.metadata.name === to) ? to : targets[0]?.node.metadata.name ?? '';
  const mig = p.view.status?.migratable;
  const running = p.view.status?.phase === 'running';

  // LM badges: the prechecks of every target, one at a time (a container has one migration at a time, checks included).
  const checkTargets = async (): Promise<void> => {
    for (const n of targets.map((t) => t.node.metadata.name)) {
      setVerdicts((v) => ({ ...v, [n]: { state: 'checking' } }));
      try {
        const m = await precheck(p.client, name, n);
        const bad = m.status.checks.find((c) => !c.ok);
        setVerdicts((v) => ({ ...v, [n]: passed(m) ? { state: 'ok' } : { state: 'no', reason: bad ? `${bad.check}: ${bad.reason}` : m.status.error ?? m.status.phase } }));
      } catch (e) {
        setVerdicts((v) => ({ ...v, [n]: { state: 'no', reason: why(e) } }));
      }
    }
  };
  useEffect(() => { if (running && !move) void checkTargets(); }, []);
  const checking = Object.values(verdicts).some((v) => v.state === 'checking');

  const verifyAndMigrate = async (): Promise<void> => {
    setError(undefined); setChecks(undefined); setMove(undefined);
    try {
      setBusy('verify');
      const c = await precheck(p.client, name, target, strategy);
      setChecks(c);
      setVerdicts((v) => ({ ...v, [target]: passed(c) ? { state: 'ok' } : { state: 'no', reason: c.status.checks.find((k) => !k.ok)?.reason ?? c.status.phase } }));
      if (!passed(c)) { setBusy(undefined); return; }
      setBusy('migrate');
      const m = await p.client.migrations.create({ container: name, to: target, strategy });
      setMove(m);
      const last = await follow(p.client, m.metadata.name, setMove, { everyMs: 250 });
      const s = last.status;
      if (s.phase === 'Succeeded') p.notify(`${name} moved ${last.spec.from} → ${last.spec.to}: freeze ${ms(s.freezeMs)}, total ${ms(s.totalMs)}, ${bytes(s.bytes)} (${s.strategy})`, 'ok');
      else p.notify(`${name} did not move (${s.phase}${s.failedIn ? ` in ${s.failedIn}` : ''}): ${s.error ?? ''}`, 'bad');
    } catch (e) {
      setError(why(e));
    } finally {
      setBusy(undefined);
    }
  };

  const cancel = async (): Promise<void> => {
    if (!move) return;
    try { setMove(await p.client.migrations.cancel(move.metadata.name)); } catch (e) { setError(why(e)); }
  };

  // Targets grouped by region for the choice.
  const byRegion = new Map<string, NodeView[]>();
  for (const n of targets) {
    const r = topology(n).region || 'no region';
    byRegion.set(r, [...(byRegion.get(r) ?? []), n]);
  }
  const s = move?.status;
  // The bar measures what the target holds against the memory while memory moves: pre-copy's first
  // round (all of it, while the container runs), then the freeze and restore. The dashboard keeps
  // its own copy of the server's rules, as of TERMINAL: this one is movesMemory (src/migration/phases.ts).
  const moving = s !== undefined && ((s.phase === 'Copy' && s.round === 0) || ['Freeze', 'Transfer', 'Restore'].includes(s.phase));
  const pct = moving && s.progress?.totalBytes ? Math.min(100, Math.round((s.progress.bytes / s.progress.totalBytes) * 100)) : undefined;
  const stepsShown = STEPS.filter((x) => x !== 'Copy' || move?.status.strategy === 'pre-copy');

  return (
    <aside class="drawer" data-testid="migrate-panel" data-container={name}>
      <header><h2>Migrate {name}</h2><button data-testid="migrate-close" onClick={p.close}>✕</button></header>
      <p>Now on <b>{from ?? '-'}</b> · {p.view.status?.phase ?? 'pending'}</p>
      <p data-testid="migratable" data-ok={mig?.ok ? 'yes' : 'no'}>
        Migratable: {mig === undefined ? <span class="muted">not checked yet</span> : mig.ok ? <b class="good">yes</b> : <><b class="bad">no</b>: {mig.reasons.join('; ')}</>}
      </p>
      {targets.length === 0 ? <p class="muted">No other ready, schedulable host.</p> : (
        <div class="targets">
          <h3>Target</h3>
          {[...byRegion].map(([region, ns]) => (
            <div key={region} class="region-targets"><div class="muted">{region}</div>
              {ns.map((n) => {
                const nn = n.node.metadata.name;
                const v = verdicts[nn];
                return (
                  <label key={nn} class={`target ${target === nn ? 'chosen' : ''}`}>
                    <input type="radio" name="target" value={nn} checked={target === nn} onChange={() => setTo(nn)} data-testid={`target-${nn}`} />
                    {nn} <span class="muted">{topology(n).zone}</span>{' '}
                    {v?.state === 'ok' && <span class="badge lm" data-testid={`lm-${nn}`} title="passes the live-migration prechecks">LM</span>}
                    {v?.state === 'checking' && <span class="muted">checking…</span>}
                    {v?.state === 'no' && <span class="badge no" title={v.reason}>no LM</span>}
                  </label>
                );
              })}
            </div>
          ))}
          <select data-testid="migrate-target" value={target} onChange={(e) => setTo((e.target as HTMLSelectElement).value)}>
            {[...byRegion].map(([region, ns]) => (
              <optgroup key={region} label={region}>{ns.map((n) => <option key={n.node.metadata.name} value={n.node.metadata.name}>{n.node.metadata.name}{verdicts[n.node.metadata.name]?.state === 'ok' ? ' (LM)' : ''}</option>)}</optgroup>
            ))}
          </select>{' '}
          <select data-testid="migrate-strategy" value={strategy} onChange={(e) => setStrategy((e.target as HTMLSelectElement).value as Strategy)}>
            {(['auto', 'stop-copy', 'pre-copy', 'post-copy'] as const).map((x) => <option key={x} value={x}>{x}</option>)}
          </select>{' '}
          <button class="primary" data-testid="verify-migrate" disabled={!running || busy !== undefined || checking || !target} onClick={() => void verifyAndMigrate()}>
            {busy === 'verify' ? 'Verifying…' : busy === 'migrate' ? 'Migrating…' : 'Verify & Migrate'}
          </button>{' '}
          <button data-testid="recheck" disabled={busy !== undefined || checking || !running} onClick={() => void checkTargets()}>Re-check targets</button>
        </div>
      )}
      {error && <p class="bad" data-testid="migrate-error">{error}</p>}
      {checks && (
        <div data-testid="migration-checks" data-passed={passed(checks) ? 'yes' : 'no'}>
          <h3>Prechecks {passed(checks) ? <span class="good">passed</span> : <span class="bad">failed</span>}</h3>
          <ul class="checks">{checks.status.checks.map((c) => <li key={c.check} class={c.ok ? 'good' : 'bad'}>{c.ok ? '✓' : '✗'} {c.check}: <span class="muted">{c.reason}</span></li>)}</ul>
        </div>
      )}
      {move && s && (
        <div class="progress" data-testid="migration" data-id={move.metadata.name}>
          <h3>{move.metadata.name}: <span data-testid="migration-phase" data-phase={s.phase} class={s.phase === 'Succeeded' ? 'good' : ended(move) ? 'bad' : ''}>{s.phase}</span></h3>
          <ol class="steps">{stepsShown.map((x) => <li key={x} class={s.history.some((h) => h.phase === x) ? 'done' : ''}>{x}</li>)}</ol>
          {pct !== undefined && !ended(move) && <div class="bar" data-testid="migration-progress"><div style={{ width: `${pct}%` }} /><span>{bytes(s.progress!.bytes)} of {bytes(s.progress!.totalBytes)}</span></div>}
          <p class="muted">strategy {s.strategy} ({s.strategyReason}){s.round > 0 ? ` · round ${s.round}` : ''}</p>
          {!ended(move) && s.phase !== 'Switch' && s.phase !== 'Cleanup' && <button data-testid="migration-cancel" disabled={s.cancelRequested} onClick={() => void cancel()}>{s.cancelRequested ? 'Cancelling…' : 'Cancel'}</button>}
          {ended(move) && (
            <table class="report" data-testid="migration-report" data-freeze-ms={s.freezeMs ?? ''} data-total-ms={s.totalMs ?? ''} data-bytes={s.bytes}>
              <tbody>
                <tr><th>Result</th><td>{s.phase}{s.error ? `: ${s.error}` : ''}</td></tr>
                <tr><th>Freeze</th><td>{ms(s.freezeMs)}</td></tr>
                <tr><th>Total</th><td>{ms(s.totalMs)}</td></tr>
                <tr><th>Moved</th><td>{bytes(s.bytes)}</td></tr>
                <tr><th>Strategy</th><td>{s.strategy}</td></tr>
                <tr><th>Route</th><td>{move.spec.from} → {move.spec.to}</td></tr>
              </tbody>
            </table>
          )}
          <details><summary>History</summary><ul>{s.history.map((h, i) => <li key={i}><code>{h.at.slice(11, 23)}</code> {h.phase}{h.message ? ` — ${h.message}` : ''}</li>)}</ul></details>
        </div>
      )}
    </aside>
  );
}
