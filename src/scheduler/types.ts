/**
 * The scheduler's vocabulary: what it knows of a node, what a container asks for, and the decision
 * with its explanation. Plain data, so callers build it from the store and tests build it by hand.
 */
import type { FerryError } from '../errors/index.ts';

/** Node labels the scheduler reads for topology (set them on a node to place it in a region and zone). */
export const TOPOLOGY_LABELS = {
  region: 'ferry.io/region',
  zone: 'ferry.io/zone',
} as const;

/** The workload classes a request may name: what a container mostly uses. */
export const WORKLOAD_CLASSES = ['cpu', 'io', 'memory', 'network'] as const;
/** What a container mostly uses; unlike classes share a node better than like ones. */
export type WorkloadClass = (typeof WORKLOAD_CLASSES)[number];

/** How the resource scorer prefers nodes: the emptiest (spread, the default) or the fullest that fits (binpack). */
export type Strategy = 'spread' | 'binpack';

/** What the scheduler knows about one node. */
export interface NodeSnapshot {
  readonly name: string;
  readonly ready: boolean;
  readonly unschedulable: boolean;
  /** Node labels; `ferry.io/region` and `ferry.io/zone` place it in the topology. */
  readonly labels: Readonly<Record<string, string>>;
  readonly capacity: { readonly cpus: number; readonly memoryBytes: number };
  /** Sum of the limits of the containers already placed there. */
  readonly allocated: { readonly cpus: number; readonly memoryBytes: number };
  /** Replicas already there, by service name (absent: none). */
  readonly services?: Readonly<Record<string, number>>;
  /** Containers already there, by workload class (absent: none; classes outside WORKLOAD_CLASSES are ignored). */
  readonly workloads?: Readonly<Record<string, number>>;
}

/** What a container asks for. */
export interface PlacementRequest {
  readonly name: string;
  readonly memoryBytes?: number;
  readonly cpus?: number;
  /** Pin to this node. */
  readonly node?: string;
  /** The service it is a replica of: replicas keep apart (anti-affinity, and one per host when asked). */
  readonly service?: string;
  /** Refuse nodes that already run a replica of `service`. */
  readonly onePerHost?: boolean;
  /** Node label constraints (`key==value`, `key!=value`, `key`, `!key`; see constraints.ts). */
  readonly constraints?: readonly string[];
  /** Only nodes labelled with this `ferry.io/region`. */
  readonly region?: string;
  /** Only nodes labelled with this `ferry.io/zone`. */
  readonly zone?: string;
  /** spread (default) or binpack. */
  readonly strategy?: Strategy;
  /** What it mostly uses (one of WORKLOAD_CLASSES). */
  readonly workloadClass?: string;
}

/** One scorer's part in a node's score. */
export interface PluginScore {
  /** Scorer name, e.g. `least-allocated`. */
  readonly plugin: string;
  /** What the scorer measured (its unit is the scorer's; see the README). */
  readonly raw: number;
  /** The raw figure mapped onto 0–100, higher is better. */
  readonly score: number;
  readonly weight: number;
}

/** Why a node was or was not chosen. */
export interface NodeVerdict {
  readonly node: string;
  readonly feasible: boolean;
  /** The filter that rejected it (infeasible nodes only). */
  readonly filter?: string;
  /** The score breakdown (feasible nodes only). */
  readonly scores?: readonly PluginScore[];
  /** The filter's human reason, or the score breakdown in words. */
  readonly reason: string;
  /** The weighted score, 0–100 (0 when infeasible). */
  readonly score: number;
}

/** How far a decision looked: enough to say how a sampled decision was reached. */
export interface DecisionScope {
  /** Nodes the scheduler knows. */
  readonly total: number;
  /** Nodes the filters ran on (the others were ruled out by an index or not reached by the sample). */
  readonly examined: number;
  /** Feasible nodes found (all of them scored). */
  readonly feasibleCount: number;
  /** Nodes ruled out, by filter name (those ruled out by an index are counted under the filter it stands for). */
  readonly rejected: Readonly<Record<string, number>>;
  /** True when the scan stopped at the score limit before reaching every node. */
  readonly sampled: boolean;
}

/** The decision with its explanation; verdicts are sorted best first (then rejected nodes by name). */
export type PlacementDecision = DecisionScope & (
  | { readonly ok: true; readonly node: string; readonly score: number; readonly reason: string; readonly verdicts: NodeVerdict[] }
  /** `error` is set when the request itself is malformed (a bad constraint, class or strategy). */
  | { readonly ok: false; readonly reason: string; readonly verdicts: NodeVerdict[]; readonly error?: FerryError }
);
