/**
 * The migration state machine: pure, no I/O. `step(state, event)` returns the next state and the
 * actions the executor must run for it. Its rules are the safety rules of live migration:
 * - the source is never destroyed before the target has confirmed a running restore AND the store
 *   has recorded the switch (Switch → Cleanup);
 * - any failure or cancel before that point rolls back: resume the source, remove every trace on
 *   the target;
 * - after that point failures never roll back (the source copy is stale): the executor retries
 *   forward, except a fatal loss (post-copy source gone before all pages arrived) which is Failed.
 */
import type { MigrationPhase, Strategy } from './phases.ts';
import { TERMINAL, pastPointOfNoReturn } from './phases.ts';

/** What the executor is asked to do on entering a phase. Every action must be idempotent. */
export type MigrationAction =
  | 'run-prechecks' | 'prepare-target' | 'copy-round' | 'freeze-and-dump' | 'transfer-final' | 'restore-target'
  | 'record-switch' | 'destroy-source' | 'resume-source' | 'destroy-target';

/** The machine's state (the `status` part of a Migration object holds it). */
export interface MachineState {
  readonly phase: MigrationPhase;
  readonly strategy: Strategy;
  /** Pre-copy rounds completed. */
  readonly round: number;
  /** Only run the prechecks (`ferry migrate --check`). */
  readonly checkOnly: boolean;
  /** Why the migration failed or rolled back. */
  readonly error?: string;
  /** The phase the failure happened in. */
  readonly failedIn?: MigrationPhase;
}

/** Things that happen to a migration. */
export type MigrationEvent =
  | { readonly type: 'start' }
  | { readonly type: 'precheck-passed' }
  | { readonly type: 'precheck-failed'; readonly reasons: readonly string[] }
  | { readonly type: 'prepared' }
  | { readonly type: 'round-done'; readonly converged: boolean }
  | { readonly type: 'frozen' }
  | { readonly type: 'transferred' }
  | { readonly type: 'restored' }
  | { readonly type: 'switched' }
  | { readonly type: 'cleaned' }
  | { readonly type: 'cancel' }
  | { readonly type: 'error'; readonly message: string; readonly fatal?: boolean }
  | { readonly type: 'rolled-back' }
  | { readonly type: 'rollback-failed'; readonly message: string };

/** The result of a step. */
export type StepResult =
  | { readonly ok: true; readonly state: MachineState; readonly actions: readonly MigrationAction[] }
  | { readonly ok: false; readonly state: MachineState; readonly reason: string };

/** The actions that enter each phase. */
export const ENTRY_ACTIONS: Readonly<Record<MigrationPhase, readonly MigrationAction[]>> = {
  Pending: [],
  Precheck: ['run-prechecks'],
  Prepare: ['prepare-target'],
  Copy: ['copy-round'],
  Freeze: ['freeze-and-dump'],
  Transfer: ['transfer-final'],
  Restore: ['restore-target'],
  Switch: ['record-switch'],
  Cleanup: ['destroy-source'],
  Succeeded: [],
  RollingBack: ['resume-source', 'destroy-target'],
  RolledBack: [],
  Failed: [],
};

/** A new machine for a migration. */
export function initial(strategy: Strategy, checkOnly = false): MachineState {
  return { phase: 'Pending', strategy, round: 0, checkOnly };
}

function enter(s: MachineState, phase: MigrationPhase, extra: Partial<MachineState> = {}): StepResult {
  const state = { ...s, ...extra, phase };
  return { ok: true, state, actions: ENTRY_ACTIONS[phase] };
}

function refuse(s: MachineState, reason: string): StepResult {
  return { ok: false, state: s, reason };
}

/** The forward move each event makes from the phase it belongs to. */
function forward(s: MachineState, e: MigrationEvent): StepResult | undefined {
  switch (`${s.phase}:${e.type}`) {
    case 'Pending:start': return enter(s, 'Precheck');
    case 'Precheck:precheck-passed': return s.checkOnly ? enter(s, 'Succeeded') : enter(s, 'Prepare');
    case 'Precheck:precheck-failed':
      return enter(s, 'Failed', { error: `prechecks failed: ${(e as { reasons: readonly string[] }).reasons.join('; ')}`, failedIn: 'Precheck' });
    // Only pre-copy copies memory while the container runs; the others go straight to the freeze.
    case 'Prepare:prepared': return s.strategy === 'pre-copy' ? enter(s, 'Copy') : enter(s, 'Freeze');
    case 'Copy:round-done': {
      const round = s.round + 1;
      return (e as { converged: boolean }).converged ? enter(s, 'Freeze', { round }) : enter(s, 'Copy', { round });
    }
    case 'Freeze:frozen': return enter(s, 'Transfer');
    case 'Transfer:transferred': return enter(s, 'Restore');
    case 'Restore:restored': return enter(s, 'Switch');
    case 'Switch:switched': return enter(s, 'Cleanup');
    case 'Cleanup:cleaned': return enter(s, 'Succeeded');
    case 'RollingBack:rolled-back': return enter(s, 'RolledBack');
    case 'RollingBack:rollback-failed':
      return enter(s, 'Failed', { error: `${s.error ?? 'rolled back'}; the rollback failed too: ${(e as { message: string }).message}` });
    default: return undefined;
  }
}

/** Applies one event. Events that make no sense in the current phase are refused (state unchanged). */
export function step(s: MachineState, e: MigrationEvent): StepResult {
  if (TERMINAL.has(s.phase)) return refuse(s, `the migration has ended (${s.phase})`);
  if (e.type === 'cancel' || e.type === 'error') {
    const why = e.type === 'cancel' ? 'cancelled by the user' : e.message;
    if (s.phase === 'RollingBack') return e.type === 'cancel' ? refuse(s, 'already rolling back') : { ok: true, state: s, actions: ENTRY_ACTIONS.RollingBack };
    if (s.phase === 'Pending' || s.phase === 'Precheck') {
      // Nothing was touched yet: no rollback needed.
      return enter(s, e.type === 'cancel' ? 'RolledBack' : 'Failed', { error: why, failedIn: s.phase });
    }
    if (!pastPointOfNoReturn(s.phase)) return enter(s, 'RollingBack', { error: why, failedIn: s.phase });
    if (e.type === 'cancel') return refuse(s, `too late to cancel: the container already runs on the target (${s.phase})`);
    if (e.fatal) return enter(s, 'Failed', { error: why, failedIn: s.phase });
    // Past the switch a failure is retried forward: re-run this phase's (idempotent) actions.
    return { ok: true, state: { ...s, error: why }, actions: ENTRY_ACTIONS[s.phase] };
  }
  return forward(s, e) ?? refuse(s, `event ${e.type} does not apply in phase ${s.phase}`);
}

/**
 * What a new leader (or a restarted agent) does with a migration it finds in `s` after a crash:
 * before the point of no return it rolls back, after it finishes forward by re-running the phase.
 * A restore that the target reports as running counts as `restored` (the executor checks first).
 */
export function recover(s: MachineState): StepResult {
  if (TERMINAL.has(s.phase)) return { ok: true, state: s, actions: [] };
  if (s.phase === 'Pending' || s.phase === 'Precheck') return enter(s, 'RolledBack', { error: 'interrupted before anything moved', failedIn: s.phase });
  if (s.phase === 'RollingBack' || pastPointOfNoReturn(s.phase)) return { ok: true, state: s, actions: ENTRY_ACTIONS[s.phase] };
  return enter(s, 'RollingBack', { error: `interrupted in ${s.phase} (a manager or agent restarted)`, failedIn: s.phase });
}
