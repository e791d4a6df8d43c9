/**
 * The Scheduler: an incremental cluster state plus the pipeline that places one request on it
 * (filters → scorers → normalize and weight → pick → explanation). `place()` commits the chosen
 * node into the state, so a stream of placements costs no rebuild. Pure: no I/O, no clock, no
 * randomness; the same nodes and the same sequence of requests give the same decisions.
 *
 * Sampling (like kube-scheduler's percentageOfNodesToScore and Nomad's candidate limit): the filters
 * walk the nodes from a rotating cursor and stop once `scoreLimit` feasible nodes are found; only
 * those are scored. The cursor moves past the nodes examined, so successive decisions look at
 * successive slices of the cluster. The walk goes on until the limit or the last node, so a feasible
 * node is always found when one exists; nodes ruled out by an exact index (a pin, a label value)
 * are skipped without a walk and counted under that filter.
 */
import { Explanation, Placed, Rejections, Unplaced, scoredReason, type Scoring } from './decision.ts';
import { failureLine, LISTED, scopeLine } from './explain.ts';
import { FILTERS, onePerHost, type FilterPlugin } from './filters.ts';
import { toQuery, type Query } from './query.ts';
import { SCORERS, type ScorerPlugin } from './scorers.ts';
import { ClusterState, type Load } from './state.ts';
import type { NodeSnapshot, PlacementDecision, PlacementRequest } from './types.ts';

/** How much a Scheduler looks at and tells per decision. */
export interface SchedulerOptions {
  /** Feasible nodes to find and score before the scan stops; 'all' examines and scores every node. Default DEFAULT_SCORE_LIMIT. */
  readonly scoreLimit?: number | 'all';
}

/** Feasible nodes scored per decision by default: kube-scheduler's floor (minFeasibleNodesToFind). */
export const DEFAULT_SCORE_LIMIT = 100;

/** Places requests on a cluster it keeps up to date. */
export class Scheduler {
  /** The cluster as the scheduler sees it: read it freely, change it through place, commit, release and updateNode. */
  readonly state: ClusterState;
  readonly #limit: number;
  #cursor = 0;
  /** The node index of the last decision's winner (saves place() a lookup by name). */
  #chosen = -1;

  constructor(nodes: readonly NodeSnapshot[], options: SchedulerOptions = {}) {
    this.state = new ClusterState(nodes);
    const limit = options.scoreLimit ?? DEFAULT_SCORE_LIMIT;
    this.#limit = limit === 'all' ? Infinity : Math.max(1, Math.floor(limit));
  }

  /** Chooses a node for `req` and records the container there (a failed decision changes nothing). */
  place(req: PlacementRequest): PlacementDecision {
    const d = this.decide(req);
    if (d.ok) this.state.add(this.#chosen, req);
    return d;
  }

  /** Chooses a node for `req` without recording it (the sample cursor still moves on). */
  decide(req: PlacementRequest): PlacementDecision {
    const s = this.state;
    const q = toQuery(req, s);
    if (!('req' in q)) return new Unplaced(`invalid request: ${q.message}`, s.size, 0, false, [], [], undefined, q);
    if (s.size === 0) return new Unplaced('no nodes have registered', 0, 0, false, [], [], undefined);
    const filters = FILTERS.filter((f) => f.applies(q));
    const scorers = SCORERS.filter((p) => p.weight(q) > 0);
    const full = this.#limit === Infinity;

    // An exact index of one filter narrows the walk to the nodes that filter lets through.
    let list: Int32Array | undefined;
    let indexed: FilterPlugin | undefined;
    if (!full) {
      for (const f of filters) {
        const c = f.candidates?.(s, q);
        if (c && (!list || c.length < list.length)) [list, indexed] = [c, f];
      }
    }
    const m = list ? list.length : s.size;
    const cut = s.size - m;

    const start = full || m === 0 ? 0 : this.#cursor % m;
    const feasible: number[] = [];
    const refused = new Rejections();
    // Counted by filter position in the hot loop; named only when a caller reads `rejected`.
    const counts: number[] = filters.map((f) => (f === indexed ? cut : 0));
    let k = 0;
    for (; k < m && feasible.length < this.#limit; k++) {
      const j = start + k < m ? start + k : start + k - m;
      const i = list ? list[j]! : j;
      const fi = firstRejecting(filters, s, i, q);
      if (fi < 0) {
        feasible.push(i);
        continue;
      }
      counts[fi]!++;
      const f = filters[fi]!;
      refused.add(i, s.nodes[i]!, f, s.capCpu[i]! - s.allocCpu[i]!, s.capMem[i]! - s.allocMem[i]!, f === onePerHost ? (q.serviceNodes.get(i) ?? 0) : 0);
    }
    if (!full) this.#cursor = (start + k) % Math.max(1, m);
    const examined = k;
    const sampled = examined < m;

    if (feasible.length === 0) {
      const reason = failureLine(refused.examples(q, LISTED), refused.length, filters.map((f) => f.name), counts, s.size);
      return new Unplaced(reason, s.size, examined, sampled, filters, counts, new Explanation(q, s.nodes, undefined, refused));
    }
    const sc = score(scorers, s, feasible, q);
    let best = 0;
    for (let x = 1; x < feasible.length; x++) {
      // Ties go to the first name: node indices follow name order.
      if (sc.totals[x]! > sc.totals[best]! || (sc.totals[x] === sc.totals[best] && feasible[x]! < feasible[best]!)) best = x;
    }
    const line = scopeLine(feasible.length, examined, s.size, sampled ? this.#limit : undefined, indexed?.name, cut);
    const ex = new Explanation(q, s.nodes, sc, refused);
    this.#chosen = feasible[best]!;
    return new Placed(s.nodes[feasible[best]!]!.name, sc.totals[best]!, `${scoredReason(sc, best)} (${line})`, s.size, examined, feasible.length, sampled, filters, counts, ex);
  }

  /** Records a container placed on `node` outside `place()` (e.g. by a pin the caller enforced). */
  commit(node: string, load: Load): void {
    const i = this.state.indexOf(node);
    if (i !== undefined) this.state.add(i, load);
  }

  /** Forgets a container that left `node`. */
  release(node: string, load: Load): void {
    const i = this.state.indexOf(node);
    if (i !== undefined) this.state.release(i, load);
  }

  /** Takes a node's new readiness, drain flag, labels or capacity (its placed load is kept). */
  updateNode(node: NodeSnapshot): void {
    this.state.updateNode(node);
  }
}

/** The position in `filters` of the first that rejects node `i`, or -1. */
function firstRejecting(filters: readonly FilterPlugin[], s: ClusterState, i: number, q: Query): number {
  for (let x = 0; x < filters.length; x++) if (!filters[x]!.pass(s, i, q)) return x;
  return -1;
}

/** Raw figures, normalized scores and weighted totals of the feasible nodes. */
function score(scorers: readonly ScorerPlugin[], s: ClusterState, feasible: readonly number[], q: Query): Scoring {
  const n = feasible.length;
  // Plain arrays, not typed ones: short-lived typed arrays cost the garbage collector far more.
  const totals: number[] = [];
  for (let x = 0; x < n; x++) totals.push(0);
  const raws: number[][] = [];
  const scores: number[][] = [];
  const weights = scorers.map((p) => p.weight(q));
  const weightSum = weights.reduce((a, b) => a + b, 0);
  for (let k = 0; k < scorers.length; k++) {
    const p = scorers[k]!;
    const w = weights[k]!;
    const raw: number[] = [];
    let max = 0;
    for (let x = 0; x < n; x++) {
      const r = p.raw(s, feasible[x]!, q);
      raw.push(r);
      if (r > max) max = r;
    }
    const fewest = p.normalize === 'fewest-best';
    const out: number[] = [];
    for (let x = 0; x < n; x++) {
      const v = !fewest ? raw[x]! : max === 0 ? 100 : (100 * (max - raw[x]!)) / max;
      out.push(v);
      totals[x]! += w * v;
    }
    raws.push(raw);
    scores.push(out);
  }
  for (let x = 0; x < n; x++) totals[x] = Math.round((100 * totals[x]!) / weightSum) / 100;
  return { feasible, scorers, weights, raws, scores, totals };
}
