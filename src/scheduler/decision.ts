/**
 * Decisions and their explanations. A decision keeps what it saw (the scores it computed, and for
 * each rejected node the filter, the node and its free room then) and words the per-node verdicts
 * only when `verdicts` is read: a stream of placements pays for numbers, not for sentences, and a
 * verdict read later still says what was true at the decision, whatever was placed since.
 */
import type { FerryError } from '../errors/index.ts';
import { fmt } from './explain.ts';
import type { FilterPlugin, NodeView } from './filters.ts';
import type { Query } from './query.ts';
import type { ScorerPlugin } from './scorers.ts';
import type { NodeRecord } from './state.ts';
import type { DecisionScope, NodeVerdict, PluginScore } from './types.ts';

/** What the scorers made of the feasible nodes: per scorer the raw figures and the 0–100 scores, and the totals. */
export interface Scoring {
  /** Node indices of the feasible nodes, in the order of the arrays below. */
  readonly feasible: readonly number[];
  readonly scorers: readonly ScorerPlugin[];
  readonly weights: readonly number[];
  readonly raws: readonly (readonly number[])[];
  readonly scores: readonly (readonly number[])[];
  /** Weighted means, rounded to 0.01 so that ties are ties as shown. */
  readonly totals: readonly number[];
}

/** The rejected nodes of one decision, as they were then (parallel arrays: one push each per node, no object). */
export class Rejections {
  /** Node indices; the other arrays hold, at the same position, the node's record, filter and free room. */
  readonly index: number[] = [];
  readonly nodes: NodeRecord[] = [];
  readonly filters: FilterPlugin[] = [];
  readonly freeCpu: number[] = [];
  readonly freeMemoryBytes: number[] = [];
  readonly replicas: number[] = [];

  /** Records node `i` (`node`) as rejected by `filter`. */
  add(i: number, node: NodeRecord, filter: FilterPlugin, freeCpu: number, freeMemoryBytes: number, replicas: number): void {
    this.index.push(i);
    this.nodes.push(node);
    this.filters.push(filter);
    this.freeCpu.push(freeCpu);
    this.freeMemoryBytes.push(freeMemoryBytes);
    this.replicas.push(replicas);
  }

  /** How many nodes were rejected. */
  get length(): number {
    return this.index.length;
  }

  /** Verdicts enough to say why nothing fits: every one when there are few, else the first of each filter. */
  examples(q: Query, few: number): NodeVerdict[] {
    if (this.length <= few) return Array.from(this.index.keys()).sort((a, b) => this.index[a]! - this.index[b]!).map((k) => this.verdict(k, q));
    const first = new Map<FilterPlugin, number>();
    for (let k = 0; k < this.length; k++) {
      const f = this.filters[k]!;
      const seen = first.get(f);
      if (seen === undefined || this.index[k]! < this.index[seen]!) first.set(f, k);
    }
    return [...first.values()].map((k) => this.verdict(k, q));
  }

  /** The verdict of the k-th rejected node. */
  verdict(k: number, q: Query): NodeVerdict {
    const v = nodeView(this.nodes[k]!, this.freeCpu[k]!, this.freeMemoryBytes[k]!, this.replicas[k]!);
    const f = this.filters[k]!;
    return { node: v.node.name, feasible: false, filter: f.name, reason: f.reason(v, q), score: 0 };
  }
}

/** Everything a decision needs to word its verdicts later. */
export class Explanation {
  #verdicts: NodeVerdict[] | undefined;

  constructor(
    private readonly q: Query | undefined,
    private readonly names: readonly NodeRecord[],
    private readonly scoring: Scoring | undefined,
    private readonly rejections: Rejections | undefined,
  ) {}

  /** Feasible nodes best first (ties by name), then rejected nodes by name. */
  verdicts(): NodeVerdict[] {
    if (this.#verdicts) return this.#verdicts;
    const out: NodeVerdict[] = [];
    const sc = this.scoring;
    if (sc) {
      const order = Array.from(sc.feasible.keys()).sort((a, b) => sc.totals[b]! - sc.totals[a]! || sc.feasible[a]! - sc.feasible[b]!);
      for (const x of order) out.push(scoredVerdict(this.names, sc, x));
    }
    const r = this.rejections;
    if (r && this.q) {
      const order = Array.from(r.index.keys()).sort((a, b) => r.index[a]! - r.index[b]!);
      for (const k of order) out.push(r.verdict(k, this.q));
    }
    return (this.#verdicts = out);
  }
}

// A module-level builder, not a closure made per decision: V8 keeps its optimized code across decisions.
function pluginScore(plugin: string, raw: number, score: number, weight: number): PluginScore {
  return { plugin, raw, score, weight };
}
function nodeView(node: NodeRecord, freeCpu: number, freeMemoryBytes: number, replicas: number): NodeView {
  return { node, freeCpu, freeMemoryBytes, replicas };
}
// The first objects built give their fields a double representation. Built first with whole numbers,
// the fields would be small integers, and every fractional score would throw V8's optimized code
// away again (a deopt loop measured at ~3 µs per object in bench/scheduler).
pluginScore('', 0.5, 0.5, 0.5);
nodeView({ name: '', ready: true, unschedulable: false, labels: {}, zone: '' }, 0.5, 0.5, 0.5);

/** `score 62.5: least-allocated 50×1, service-spread 100×2` for the x-th feasible node, straight from the figures. */
export function scoredReason(sc: Scoring, x: number): string {
  let s = `score ${fmt(sc.totals[x]!)}:`;
  for (let k = 0; k < sc.scorers.length; k++) s += `${k === 0 ? ' ' : ', '}${sc.scorers[k]!.name} ${fmt(sc.scores[k]![x]!)}×${sc.weights[k]}`;
  return s;
}

/** The verdict of the x-th feasible node. */
export function scoredVerdict(names: readonly NodeRecord[], sc: Scoring, x: number): NodeVerdict {
  const scores: PluginScore[] = [];
  for (let k = 0; k < sc.scorers.length; k++) scores.push(pluginScore(sc.scorers[k]!.name, sc.raws[k]![x]!, sc.scores[k]![x]!, sc.weights[k]!));
  return { node: names[sc.feasible[x]!]!.name, feasible: true, scores, reason: scoredReason(sc, x), score: sc.totals[x]! };
}

/**
 * What both kinds of decision carry. `rejected` and `verdicts` are getters, computed on first read
 * (naming the counts costs more than counting them): copy them by name, a spread leaves them out;
 * `JSON.stringify` includes them.
 */
abstract class Decision implements DecisionScope {
  readonly #filters: readonly FilterPlugin[];
  readonly #counts: readonly number[];
  readonly #explanation: Explanation | undefined;
  #rejected: Record<string, number> | undefined;

  constructor(
    readonly total: number,
    readonly examined: number,
    readonly sampled: boolean,
    filters: readonly FilterPlugin[],
    counts: readonly number[],
    explanation: Explanation | undefined,
  ) {
    this.#filters = filters;
    this.#counts = counts;
    this.#explanation = explanation;
  }

  abstract readonly feasibleCount: number;

  /** Nodes ruled out, by filter name. */
  get rejected(): Readonly<Record<string, number>> {
    if (!this.#rejected) {
      this.#rejected = {};
      for (let x = 0; x < this.#filters.length; x++) this.#rejected[this.#filters[x]!.name] = this.#counts[x]!;
    }
    return this.#rejected;
  }

  /** A verdict per examined node (worded on first read). */
  get verdicts(): NodeVerdict[] {
    return this.#explanation?.verdicts() ?? [];
  }

  /** The scope as plain data. */
  protected scope(): DecisionScope & { verdicts: NodeVerdict[] } {
    const { total, examined, feasibleCount, rejected, sampled, verdicts } = this;
    return { total, examined, feasibleCount, rejected, sampled, verdicts };
  }
}

/** A node was chosen. */
export class Placed extends Decision {
  readonly ok = true as const;
  constructor(
    readonly node: string,
    readonly score: number,
    readonly reason: string,
    total: number,
    examined: number,
    readonly feasibleCount: number,
    sampled: boolean,
    filters: readonly FilterPlugin[],
    counts: readonly number[],
    explanation: Explanation,
  ) {
    super(total, examined, sampled, filters, counts, explanation);
  }

  /** The decision as plain data, verdicts included. */
  toJSON(): object {
    return { ok: this.ok, node: this.node, score: this.score, reason: this.reason, ...this.scope() };
  }
}

/** No node can take the request, or the request is malformed (`error`). */
export class Unplaced extends Decision {
  readonly ok = false as const;
  readonly feasibleCount = 0;
  constructor(
    readonly reason: string,
    total: number,
    examined: number,
    sampled: boolean,
    filters: readonly FilterPlugin[],
    counts: readonly number[],
    explanation: Explanation | undefined,
    readonly error?: FerryError,
  ) {
    super(total, examined, sampled, filters, counts, explanation);
  }

  /** The decision as plain data, verdicts included. */
  toJSON(): object {
    return { ok: this.ok, reason: this.reason, ...this.scope(), ...(this.error ? { error: this.error.toJSON() } : {}) };
  }
}
