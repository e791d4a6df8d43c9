/**
 * Where a running container goes when it has to leave its node (a drain, or a migration without a
 * target): the ordinary placement over every other node. Pure, like `place()`.
 */
import { place } from './placement.ts';
import type { NodeSnapshot, PlacementDecision, PlacementRequest } from './types.ts';

/** A container already on its way to `node` (a migration under way): its limits, service and class. */
export interface IncomingLoad {
  readonly node: string;
  readonly cpus?: number;
  readonly memoryBytes?: number;
  readonly service?: string;
  readonly workloadClass?: string;
}

const plus = (m: Readonly<Record<string, number>> | undefined, key: string | undefined): Readonly<Record<string, number>> | undefined =>
  key === undefined ? m : { ...m, [key]: (m?.[key] ?? 0) + 1 };

/**
 * Picks a node other than `from` for `req`. A pin to `from` is set aside (that node is being left);
 * a pin elsewhere still holds. Containers migrating to a node count as placed there, so
 * concurrent moves do not all pick the same "emptiest" node past its capacity.
 */
export function placeEvacuee(req: PlacementRequest, from: string, nodes: readonly NodeSnapshot[], incoming: readonly IncomingLoad[] = []): PlacementDecision {
  const others = nodes.filter((n) => n.name !== from).map((n) => {
    let out = n;
    for (const i of incoming) {
      if (i.node !== n.name) continue;
      out = {
        ...out,
        allocated: { cpus: out.allocated.cpus + (i.cpus ?? 0), memoryBytes: out.allocated.memoryBytes + (i.memoryBytes ?? 0) },
        services: plus(out.services, i.service),
        workloads: plus(out.workloads, i.workloadClass),
      };
    }
    return out;
  });
  if (others.length === 0) {
    return { ok: false, reason: `no node other than ${from} has registered`, verdicts: [], total: 0, examined: 0, feasibleCount: 0, rejected: {}, sampled: false };
  }
  const pinnedHere = req.node === from;
  const d = place({ ...req, node: pinnedHere ? undefined : req.node }, others);
  if (!d.ok || !pinnedHere) return d;
  // Verdicts and counts are read out by name: a decision computes them on demand, and a spread copies fields only.
  return { ...d, verdicts: d.verdicts, rejected: d.rejected, reason: `${d.reason}; its pin to ${from} is set aside while it leaves that node` };
}
