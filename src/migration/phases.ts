/**
 * The phases of a live migration and what each one means for where the container runs. Pure data;
 * the state machine (machine.ts) moves between them and the executor (later, in the agents) acts.
 */

/** Every phase a Migration can be in. */
export type MigrationPhase =
  | 'Pending' | 'Precheck' | 'Prepare' | 'Copy' | 'Freeze' | 'Transfer' | 'Restore' | 'Switch' | 'Cleanup'
  | 'Succeeded' | 'RollingBack' | 'RolledBack' | 'Failed';

/** Phases in the order a successful migration passes them. */
export const FORWARD: readonly MigrationPhase[] = [
  'Pending', 'Precheck', 'Prepare', 'Copy', 'Freeze', 'Transfer', 'Restore', 'Switch', 'Cleanup', 'Succeeded',
];

/**
 * Whether memory is on its way to the target in this phase, so a progress bar means something:
 * pre-copy's first round (all of memory, while the container runs), the freeze, the transfer and
 * the restore. Later rounds move only what changed.
 */
export function movesMemory(s: { readonly phase: MigrationPhase; readonly round: number }): boolean {
  return (s.phase === 'Copy' && s.round === 0) || s.phase === 'Freeze' || s.phase === 'Transfer' || s.phase === 'Restore';
}

/** Phases after which nothing changes any more. */
export const TERMINAL: ReadonlySet<MigrationPhase> = new Set(['Succeeded', 'RolledBack', 'Failed']);

/**
 * Where the container's process runs in a phase:
 * - `source`: running on the source only (the target has at most a prepared, unstarted copy);
 * - `frozen`: frozen on the source (or dumped) and not yet running on the target — the freeze;
 * - `target`: running on the target; the source copy is frozen/dumped and must never resume.
 * `Restore` is `frozen` until the target confirms a running restore, which is the event that moves
 * the machine to `Switch`; `RollingBack` resumes the source, so it counts as `frozen` until done.
 */
export function runsOn(phase: MigrationPhase): 'source' | 'frozen' | 'target' {
  switch (phase) {
    case 'Pending': case 'Precheck': case 'Prepare': case 'Copy': case 'RolledBack': case 'Failed':
      return 'source';
    case 'Freeze': case 'Transfer': case 'Restore': case 'RollingBack':
      return 'frozen';
    case 'Switch': case 'Cleanup': case 'Succeeded':
      return 'target';
  }
}

/** True once the target owns the container: from here on failures finish forward, never roll back. */
export function pastPointOfNoReturn(phase: MigrationPhase): boolean {
  return runsOn(phase) === 'target';
}

/** How a migration moves memory. */
export type Strategy = 'stop-copy' | 'pre-copy' | 'post-copy';
