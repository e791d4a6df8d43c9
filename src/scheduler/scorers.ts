/**
 * Scorers: named plugins that each rate a feasible node for a request. A scorer measures a raw
 * figure per node; `normalize` maps the raws of all scored nodes onto 0–100 (higher is better)
 * when the raw is not already a 0–100 score; the node's score is the weighted mean of its scorers.
 */
import type { Query } from './query.ts';
import type { ClusterState } from './state.ts';

/** How a scorer's raw figures become 0–100 scores. */
export type Normalization =
  /** The raw is already a 0–100 score. */
  | 'none'
  /** Fewer is better: 100 × (max − raw) / max over the scored nodes (100 for all when max is 0). */
  | 'fewest-best';

/** A scorer. */
export interface ScorerPlugin {
  /** Stable name, shown in explanations. */
  readonly name: string;
  /** What it prefers, in one line (listed in the README). */
  readonly description: string;
  readonly normalize: Normalization;
  /** Its weight for this request; 0 means it does not run. */
  weight(q: Query): number;
  /** The raw figure of node `i`. */
  raw(s: ClusterState, i: number, q: Query): number;
}

/** Fraction of node `i`'s memory and CPU in use once the request is on it, 0–1 each, averaged. */
function usedAfter(s: ClusterState, i: number, q: Query): number {
  const mem = Math.min(1, (s.allocMem[i]! + q.memoryBytes) / Math.max(1, s.capMem[i]!));
  const cpu = Math.min(1, (s.allocCpu[i]! + q.cpus) / Math.max(0.001, s.capCpu[i]!));
  return 0.5 * Math.max(0, mem) + 0.5 * Math.max(0, cpu);
}

/** Spread: prefer the node with the most memory and CPU left after placing. */
export const leastAllocated: ScorerPlugin = {
  name: 'least-allocated',
  description: 'strategy spread (the default): % of memory and CPU left free after placing, averaged',
  normalize: 'none',
  weight: (q) => (q.strategy === 'spread' ? 1 : 0),
  raw: (s, i, q) => 100 * (1 - usedAfter(s, i, q)),
};

/** Bin-pack: prefer the fullest node the request still fits on. */
export const mostAllocated: ScorerPlugin = {
  name: 'most-allocated',
  description: 'strategy binpack: % of memory and CPU in use after placing, averaged',
  normalize: 'none',
  weight: (q) => (q.strategy === 'binpack' ? 1 : 0),
  raw: (s, i, q) => 100 * usedAfter(s, i, q),
};

/** Anti-affinity: replicas of one service keep off each other's nodes. */
export const serviceSpread: ScorerPlugin = {
  name: 'service-spread',
  description: 'replicas of the request\'s service already on the node; fewer is better',
  normalize: 'fewest-best',
  weight: (q) => (q.req.service !== undefined ? 2 : 0),
  raw: (_s, i, q) => q.serviceNodes.get(i) ?? 0,
};

/** Anti-affinity across zones: replicas of one service spread over the zones. */
export const zoneSpread: ScorerPlugin = {
  name: 'zone-spread',
  description: 'replicas of the request\'s service already in the node\'s zone (ferry.io/zone; unlabelled nodes share one zone); fewer is better; runs only when some node has a zone',
  normalize: 'fewest-best',
  weight: (q) => (q.req.service !== undefined && q.zoned ? 1 : 0),
  raw: (s, i, q) => q.serviceZones[s.zoneOf[i]!] ?? 0,
};

/** Workload mixing: a container is better beside containers of other classes than beside its own. */
export const workloadMix: ScorerPlugin = {
  name: 'workload-mix',
  description: '% of the node\'s classed containers whose class differs from the request\'s (100 on a node with none)',
  normalize: 'none',
  weight: (q) => (q.classIndex >= 0 ? 1 : 0),
  raw: (s, i, q) => {
    const total = s.classTotal[i]!;
    return total === 0 ? 100 : 100 * (1 - s.classCount[q.classIndex]![i]! / total);
  },
};

/** Every scorer, in the order explanations list them. */
export const SCORERS: readonly ScorerPlugin[] = [leastAllocated, mostAllocated, serviceSpread, zoneSpread, workloadMix];
