/**
 * Where a running container goes when it has to leave its node (a drain, or a migration without a
 * target): the ordinary placement over every other node. Pure, like `place()`.
 */
import { place, type NodeSnapshot, type PlacementDecision, type PlacementRequest } from './placement.ts';

/** Limits of a container already on its way to `node` (a migration under way). */
export interface IncomingLoad {
  readonly node: string;
  readonly cpus?: number;
  readonly memoryBytes?: number;
}

/**
 * Picks a node other than `from` for `req`. A pin to `from` is set aside (that node is being left);
 * a pin elsewhere still holds. Containers migrating to a node count as allocated there, so
 * concurrent moves do not all pick the same "emptiest" node past its capacity.
 */
export function placeEvacuee(req: PlacementRequest, from: string, nodes: readonly NodeSnapshot[], incoming: readonly IncomingLoad[] = []): PlacementDecision {
  const others = nodes.filter((n) => n.name !== from).map((n) => {
    const load = incoming.filter((i) => i.node === n.name);
    if (load.length === 0) return n;
    return {
      ...n,
      allocated: {
        cpus: load.reduce((s, i) => s + (i.cpus ?? 0), n.allocated.cpus),
        memoryBytes: load.reduce((s, i) => s + (i.memoryBytes ?? 0), n.allocated.memoryBytes),
      },
    };
  });
  if (others.length === 0) return { ok: false, reason: `no node other than ${from} has registered`, verdicts: [] };
  const pinnedHere = req.node === from;
  const d = place({ ...req, node: pinnedHere ? undefined : req.node }, others);
  if (!d.ok || !pinnedHere) return d;
  return { ...d, reason: `${d.reason}; its pin to ${from} is set aside while it leaves that node` };
}
