/**
 * Placement in one call: the full pipeline over a snapshot of the nodes, every node examined and
 * scored, every node given a verdict. What the controllers use for one container at a time; a
 * stream of placements goes faster through a `Scheduler` that keeps its state.
 */
import { Scheduler } from './scheduler.ts';
import type { NodeSnapshot, PlacementDecision, PlacementRequest } from './types.ts';

/** Chooses a node for `req` among `nodes`, with a verdict for each node. */
export function place(req: PlacementRequest, nodes: readonly NodeSnapshot[]): PlacementDecision {
  return new Scheduler(nodes, { scoreLimit: 'all' }).decide(req);
}
