/**
 * Placement: pure, no I/O. Given a snapshot of the nodes and what is already placed on them, picks a
 * node for one container and says why (feasibility filters, then a score; the highest score wins,
 * ties broken by name so decisions are stable).
 */

/** What the scheduler knows about one node. */
export interface NodeSnapshot {
  readonly name: string;
  readonly ready: boolean;
  readonly unschedulable: boolean;
  readonly labels: Readonly<Record<string, string>>;
  readonly capacity: { readonly cpus: number; readonly memoryBytes: number };
  /** Sum of the limits of the containers already placed there. */
  readonly allocated: { readonly cpus: number; readonly memoryBytes: number };
}

/** What a container asks for. */
export interface PlacementRequest {
  readonly name: string;
  readonly memoryBytes?: number;
  readonly cpus?: number;
  /** Pin to this node. */
  readonly node?: string;
}

/** Why a node was or was not chosen. */
export interface NodeVerdict {
  readonly node: string;
  readonly feasible: boolean;
  /** Filter that rejected it, or the score breakdown. */
  readonly reason: string;
  readonly score: number;
}

/** The decision with its explanation. */
export type PlacementDecision =
  | { readonly ok: true; readonly node: string; readonly reason: string; readonly verdicts: NodeVerdict[] }
  | { readonly ok: false; readonly reason: string; readonly verdicts: NodeVerdict[] };

/** A feasibility filter: returns a rejection reason, or undefined when the node can take the container. */
type Filter = (n: NodeSnapshot, r: PlacementRequest) => string | undefined;

const FILTERS: Filter[] = [
  (n) => (n.ready ? undefined : 'node is not ready'),
  (n) => (n.unschedulable ? 'node is unschedulable (drained)' : undefined),
  (n, r) => (r.node !== undefined && r.node !== n.name ? `container is pinned to node ${r.node}` : undefined),
  (n, r) => {
    const free = n.capacity.memoryBytes - n.allocated.memoryBytes;
    return r.memoryBytes !== undefined && r.memoryBytes > free ? `not enough memory: needs ${r.memoryBytes} B, ${free} B free` : undefined;
  },
  (n, r) => {
    const free = n.capacity.cpus - n.allocated.cpus;
    return r.cpus !== undefined && r.cpus > free + 1e-9 ? `not enough CPU: needs ${r.cpus}, ${free.toFixed(2)} free` : undefined;
  },
];

/** Spread: prefer the node with the most memory and CPU left after placing (0–100). */
function leastAllocatedScore(n: NodeSnapshot, r: PlacementRequest): number {
  const mem = 1 - (n.allocated.memoryBytes + (r.memoryBytes ?? 0)) / Math.max(1, n.capacity.memoryBytes);
  const cpu = 1 - (n.allocated.cpus + (r.cpus ?? 0)) / Math.max(0.001, n.capacity.cpus);
  return Math.round(50 * Math.max(0, mem) + 50 * Math.max(0, cpu));
}

/** Chooses a node for `req` among `nodes`. */
export function place(req: PlacementRequest, nodes: readonly NodeSnapshot[]): PlacementDecision {
  const verdicts: NodeVerdict[] = nodes.map((n) => {
    for (const f of FILTERS) {
      const why = f(n, req);
      if (why) return { node: n.name, feasible: false, reason: why, score: 0 };
    }
    const score = leastAllocatedScore(n, req);
    return { node: n.name, feasible: true, reason: `least-allocated score ${score}`, score };
  });
  verdicts.sort((a, b) => Number(b.feasible) - Number(a.feasible) || b.score - a.score || a.node.localeCompare(b.node));
  const best = verdicts[0];
  if (!best || !best.feasible) {
    const reason = nodes.length === 0 ? 'no nodes have registered' : verdicts.map((v) => `${v.node}: ${v.reason}`).join('; ');
    return { ok: false, reason, verdicts };
  }
  return { ok: true, node: best.node, reason: `${best.reason} (best of ${verdicts.filter((v) => v.feasible).length} feasible)`, verdicts };
}
