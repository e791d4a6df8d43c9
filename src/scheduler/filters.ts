/**
 * Feasibility filters: named plugins that each rule a node in or out for a request. They run in
 * the order of FILTERS; the first that rejects a node names the reason. A filter whose passing
 * nodes an index knows exactly (a pin, a label value) offers them as `candidates`, so a sampled
 * decision need not walk the nodes it would reject anyway.
 */
import { satisfies, violation } from './constraints.ts';
import type { Query } from './query.ts';
import type { ClusterState, NodeRecord } from './state.ts';
import { TOPOLOGY_LABELS } from './types.ts';

/** A rejected node as it was when the filter rejected it: what its reason is worded from. */
export interface NodeView {
  readonly node: NodeRecord;
  readonly freeCpu: number;
  readonly freeMemoryBytes: number;
  /** Replicas of the request's service on the node. */
  readonly replicas: number;
}

/** A feasibility filter. */
export interface FilterPlugin {
  /** Stable name, shown in explanations. */
  readonly name: string;
  /** What it checks, in one line (listed in the README). */
  readonly description: string;
  /** False when the request gives this filter nothing to check (it is then skipped). */
  applies(q: Query): boolean;
  /** True when node `i` can take the request. */
  pass(s: ClusterState, i: number, q: Query): boolean;
  /** Why a node it rejected cannot take the request (worded on demand, from what was seen then). */
  reason(v: NodeView, q: Query): string;
  /** The ascending indices of every node that can pass, when an index knows them; else undefined. */
  candidates?(s: ClusterState, q: Query): Int32Array | undefined;
}

const always = (): boolean => true;

/** The node's agent is alive. */
export const nodeReady: FilterPlugin = {
  name: 'node-ready',
  description: 'the node is ready (its agent is alive)',
  applies: always,
  pass: (s, i) => s.ready[i] === 1,
  reason: () => 'node is not ready',
};

/** The node is not cordoned. */
export const nodeSchedulable: FilterPlugin = {
  name: 'node-schedulable',
  description: 'the node is not unschedulable (cordoned or draining)',
  applies: always,
  pass: (s, i) => s.cordoned[i] === 0,
  reason: () => 'node is unschedulable (drained)',
};

/** A pinned request goes to its node only. */
export const pinnedNode: FilterPlugin = {
  name: 'pinned-node',
  description: 'a request pinned to a node (`node`) fits that node only',
  applies: (q) => q.req.node !== undefined,
  pass: (s, i, q) => s.nodes[i]!.name === q.req.node,
  reason: (_v, q) => `container is pinned to node ${q.req.node}`,
  candidates: (s, q) => {
    const i = s.indexOf(q.req.node!);
    return i === undefined ? new Int32Array(0) : Int32Array.of(i);
  },
};

/** The request's region and zone, against the node's topology labels. */
export const topology: FilterPlugin = {
  name: 'topology',
  description: `a request asking for a region and/or zone fits nodes labelled ${TOPOLOGY_LABELS.region} / ${TOPOLOGY_LABELS.zone} with those values`,
  applies: (q) => q.req.region !== undefined || q.req.zone !== undefined,
  pass: (s, i, q) => {
    const l = s.nodes[i]!.labels;
    return (q.req.region === undefined || l[TOPOLOGY_LABELS.region] === q.req.region) && (q.req.zone === undefined || l[TOPOLOGY_LABELS.zone] === q.req.zone);
  },
  reason: (v, q) => {
    const l = v.node.labels;
    const [what, key, want] = q.req.region !== undefined && l[TOPOLOGY_LABELS.region] !== q.req.region
      ? ['region', TOPOLOGY_LABELS.region, q.req.region] : ['zone', TOPOLOGY_LABELS.zone, q.req.zone!];
    const has = l[key];
    return has === undefined ? `node has no ${key} label (wants ${what} ${want})` : `node is in ${what} ${has} (wants ${what} ${want})`;
  },
  candidates: (s, q) => (q.req.zone !== undefined ? s.withLabel(TOPOLOGY_LABELS.zone, q.req.zone) : s.withLabel(TOPOLOGY_LABELS.region, q.req.region!)),
};

/** Every label constraint of the request holds on the node. */
export const constraints: FilterPlugin = {
  name: 'constraints',
  description: 'every label constraint of the request holds (`key==value`, `key!=value`, `key`, `!key`)',
  applies: (q) => q.constraints.length > 0,
  pass: (s, i, q) => {
    const l = s.nodes[i]!.labels;
    for (const c of q.constraints) if (!satisfies(c, l)) return false;
    return true;
  },
  reason: (v, q) => {
    const l = v.node.labels;
    return violation(q.constraints.find((c) => !satisfies(c, l))!, l);
  },
  candidates: (s, q) => {
    let best: Int32Array | undefined;
    for (const c of q.constraints) {
      if (c.op !== 'eq' && c.op !== 'exists') continue;
      const ix = s.withLabel(c.key, c.value);
      if (!best || ix.length < best.length) best = ix;
    }
    return best;
  },
};

/** A onePerHost replica refuses nodes that already run one of its service. */
export const onePerHost: FilterPlugin = {
  name: 'one-per-host',
  description: 'a replica of a service with onePerHost refuses nodes already running a replica of that service',
  applies: (q) => q.req.onePerHost === true && q.req.service !== undefined,
  pass: (_s, i, q) => !q.serviceNodes.has(i),
  reason: (v, q) => `node already runs ${v.replicas} replica(s) of service ${q.req.service} (one per host)`,
};

// Allocation may overshoot capacity by float noise (0.1 + 0.2 CPUs); a hair of slack keeps exact fits fitting.
const CPU_SLACK = 1e-9;

/** The request's memory and CPU fit in what the node has left. */
export const resourcesFit: FilterPlugin = {
  name: 'resources-fit',
  description: 'the request\'s memory and CPU fit in the node\'s capacity minus what is allocated there',
  applies: (q) => q.memoryBytes > 0 || q.cpus > 0,
  pass: (s, i, q) => q.memoryBytes <= s.capMem[i]! - s.allocMem[i]! && q.cpus <= s.capCpu[i]! - s.allocCpu[i]! + CPU_SLACK,
  reason: (v, q) => {
    if (q.memoryBytes > v.freeMemoryBytes) return `not enough memory: needs ${q.memoryBytes} B, ${v.freeMemoryBytes} B free`;
    return `not enough CPU: needs ${q.cpus}, ${v.freeCpu.toFixed(2)} free`;
  },
};

/** Every filter, in the order they run (cheap and static first, so the first to reject is the plainest reason). */
export const FILTERS: readonly FilterPlugin[] = [nodeReady, nodeSchedulable, pinnedNode, topology, constraints, onePerHost, resourcesFit];
