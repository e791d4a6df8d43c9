/** The scheduler: pure placement decisions through named filter and scorer plugins, with explanations. */
export { place } from './placement.ts';
export { placeEvacuee } from './evacuate.ts';
export type { IncomingLoad } from './evacuate.ts';
export { Scheduler, DEFAULT_SCORE_LIMIT } from './scheduler.ts';
export type { SchedulerOptions } from './scheduler.ts';
export type { Load } from './state.ts';
export { parseConstraint, parseConstraints } from './constraints.ts';
export type { Constraint } from './constraints.ts';
export { FILTERS } from './filters.ts';
export type { FilterPlugin } from './filters.ts';
export { SCORERS } from './scorers.ts';
export type { ScorerPlugin } from './scorers.ts';
export { schedulerErrors } from './errors.ts';
export { TOPOLOGY_LABELS, WORKLOAD_CLASSES } from './types.ts';
export type {
  NodeSnapshot, PlacementRequest, PlacementDecision, NodeVerdict, PluginScore, DecisionScope, Strategy, WorkloadClass,
} from './types.ts';
