/**
 * Live migration, the pure part: phases, the state machine with its safety rules, and the choice of
 * strategy. The executor that drives runc/CRIU between agents builds on this (issue 3).
 */
export type { MigrationPhase, Strategy } from './phases.ts';
export { FORWARD, TERMINAL, movesMemory, runsOn, pastPointOfNoReturn } from './phases.ts';
export type { MachineState, MigrationEvent, MigrationAction, StepResult } from './machine.ts';
export { initial, step, recover, ENTRY_ACTIONS } from './machine.ts';
export type { WorkloadFacts, StrategyChoice, RoundReport, ConvergenceGoal } from './strategy.ts';
export { autoStrategy, chooseStrategy, precopyDone, stopCopyFreezeMs, preCopyFreezeMs, AUTO_STOP_COPY_MAX_BYTES, AUTO_WRITE_WINDOW_MS, AUTO_PROBE_BYTES } from './strategy.ts';
export type { NodeCheckFacts, ContainerCheckFacts, CheckResult } from './prechecks.ts';
export { precheck, blocking, missingCpuFlags, localVolumeNames, volumeCheck } from './prechecks.ts';
