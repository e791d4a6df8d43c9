/**
 * A request made ready for the plugins: validated once (constraints parsed, class and strategy
 * checked) and resolved against the cluster state (the service's counters), so the per-node work
 * in the filters and scorers is a few array reads.
 */
import { isFerryError, type FerryError } from '../errors/index.ts';
import { parseConstraint, type Constraint } from './constraints.ts';
import { schedulerErrors } from './errors.ts';
import { classIndex, type ClusterState } from './state.ts';
import { WORKLOAD_CLASSES, type PlacementRequest, type Strategy } from './types.ts';

/** A validated request with what the plugins read of the state. */
export interface Query {
  readonly req: PlacementRequest;
  readonly cpus: number;
  readonly memoryBytes: number;
  readonly strategy: Strategy;
  readonly constraints: readonly Constraint[];
  /** Index into WORKLOAD_CLASSES, or -1 when the request names none. */
  readonly classIndex: number;
  /** Replicas of the request's service per node index (empty without a service). */
  readonly serviceNodes: ReadonlyMap<number, number>;
  /** Replicas of the request's service per zone id (empty without a service). */
  readonly serviceZones: readonly number[];
  /** True when some node has a zone label. */
  readonly zoned: boolean;
}

// Requests of one service repeat the same constraints; parsing each string once keeps placements cheap.
const parsed = new Map<string, Constraint | FerryError>();
const PARSED_MAX = 10_000;

function constraintOf(source: string): Constraint | FerryError {
  let c = parsed.get(source);
  if (c === undefined) {
    try {
      c = parseConstraint(source);
    } catch (e) {
      if (!isFerryError(e)) throw e;
      c = e;
    }
    if (parsed.size >= PARSED_MAX) parsed.clear();
    parsed.set(source, c);
  }
  return c;
}

/** Validates `req` and resolves it against `state`; a FerryError says what in the request is wrong. */
export function toQuery(req: PlacementRequest, state: ClusterState): Query | FerryError {
  const strategy = req.strategy ?? 'spread';
  if (strategy !== 'spread' && strategy !== 'binpack') return schedulerErrors.SCHEDULER_BAD_STRATEGY({ value: String(strategy) });
  const ci = classIndex(req.workloadClass);
  if (req.workloadClass !== undefined && ci < 0) {
    return schedulerErrors.SCHEDULER_BAD_WORKLOAD_CLASS({ value: req.workloadClass, classes: WORKLOAD_CLASSES.join(', ') });
  }
  const constraints: Constraint[] = [];
  for (const source of req.constraints ?? []) {
    const c = constraintOf(source);
    if (!('op' in c)) return c;
    constraints.push(c);
  }
  return {
    req, strategy, constraints, classIndex: ci,
    cpus: req.cpus ?? 0,
    memoryBytes: req.memoryBytes ?? 0,
    serviceNodes: req.service === undefined ? EMPTY : state.serviceNodes(req.service),
    serviceZones: req.service === undefined ? NONE : state.serviceZoneCounts(req.service),
    zoned: state.zoned,
  };
}

const EMPTY: ReadonlyMap<number, number> = new Map();
const NONE: readonly number[] = [];
