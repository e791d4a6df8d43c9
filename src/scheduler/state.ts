/**
 * The scheduler's incremental view of the cluster: nodes in name order (so an index order is the
 * tie-break order), their allocation in typed arrays, and the counters the plugins read (replicas
 * per service per node and per zone, containers per workload class per node). Placing a container
 * updates a few numbers; nothing is rebuilt.
 */
import { TOPOLOGY_LABELS, WORKLOAD_CLASSES, type NodeSnapshot } from './types.ts';

/** What a container adds to (or, released, takes from) its node. */
export interface Load {
  readonly cpus?: number;
  readonly memoryBytes?: number;
  readonly service?: string;
  readonly workloadClass?: string;
}

/** The parts of a node that change only when the node itself is updated. */
export interface NodeRecord {
  readonly name: string;
  readonly ready: boolean;
  readonly unschedulable: boolean;
  readonly labels: Readonly<Record<string, string>>;
  /** The `ferry.io/zone` label, or '' (nodes without one form one unnamed zone). */
  readonly zone: string;
}

const CLASS_INDEX: ReadonlyMap<string, number> = new Map(WORKLOAD_CLASSES.map((c, i) => [c, i]));

/** The index of a workload class, or -1 when it is not one of WORKLOAD_CLASSES. */
export function classIndex(c: string | undefined): number {
  return c === undefined ? -1 : (CLASS_INDEX.get(c) ?? -1);
}

/** Every node the scheduler knows, with what is placed on it. */
export class ClusterState {
  /** Node records in name order: a node's index here is its index in every array below. */
  readonly nodes: NodeRecord[];
  /** 1 when the node is ready / cordoned: flags the filters read without touching the records. */
  readonly ready: Uint8Array;
  readonly cordoned: Uint8Array;
  /** Capacity and allocation (sum of the placed containers' limits), CPUs and bytes. */
  readonly capCpu: Float64Array;
  readonly capMem: Float64Array;
  readonly allocCpu: Float64Array;
  readonly allocMem: Float64Array;
  /** Containers per workload class, one array per class of WORKLOAD_CLASSES. */
  readonly classCount: Int32Array[];
  /** Containers with any workload class, per node. */
  readonly classTotal: Int32Array;
  /** Zone id of each node (an index into `zoneNames`; 0 is the unnamed zone ''). */
  readonly zoneOf: Int32Array;
  readonly zoneNames: string[] = [''];
  readonly #zoneIds = new Map<string, number>([['', 0]]);
  readonly #index = new Map<string, number>();
  #zonedNodes = 0;
  /** service → node index → replicas there. */
  readonly #serviceNodes = new Map<string, Map<number, number>>();
  /** service → replicas per zone id. */
  readonly #serviceZones = new Map<string, number[]>();
  /** `key\0value` (or `key\u0001`: any value) → indices of the nodes with that label, ascending; built on first use. */
  readonly #labelIndex = new Map<string, Int32Array>();

  constructor(snapshots: readonly NodeSnapshot[]) {
    // A name given twice: the last snapshot wins.
    const sorted = [...new Map(snapshots.map((s) => [s.name, s])).values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const n = sorted.length;
    this.nodes = new Array<NodeRecord>(n);
    this.ready = new Uint8Array(n);
    this.cordoned = new Uint8Array(n);
    this.capCpu = new Float64Array(n);
    this.capMem = new Float64Array(n);
    this.allocCpu = new Float64Array(n);
    this.allocMem = new Float64Array(n);
    this.classCount = WORKLOAD_CLASSES.map(() => new Int32Array(n));
    this.classTotal = new Int32Array(n);
    this.zoneOf = new Int32Array(n);
    sorted.forEach((s, i) => {
      this.#index.set(s.name, i);
      this.#setNode(i, s);
      this.allocCpu[i] = s.allocated.cpus;
      this.allocMem[i] = s.allocated.memoryBytes;
      for (const [svc, k] of Object.entries(s.services ?? {})) if (k > 0) this.#count(svc, i, k);
      for (const [c, k] of Object.entries(s.workloads ?? {})) {
        const ci = classIndex(c);
        if (ci < 0 || !(k > 0)) continue;
        this.classCount[ci]![i]! += k;
        this.classTotal[i]! += k;
      }
    });
  }

  /** True when some node carries a zone label (zone spreading means nothing otherwise). */
  get zoned(): boolean {
    return this.#zonedNodes > 0;
  }

  /** How many nodes there are. */
  get size(): number {
    return this.nodes.length;
  }

  /** The index of node `name`, or undefined. */
  indexOf(name: string): number | undefined {
    return this.#index.get(name);
  }

  /** Replicas of `service` per node index (empty when it has none); read-only for callers. */
  serviceNodes(service: string): ReadonlyMap<number, number> {
    return this.#serviceNodes.get(service) ?? EMPTY;
  }

  /** Replicas of `service` per zone id (see `zoneOf`; a zone past the end has none); read-only for callers. */
  serviceZoneCounts(service: string): readonly number[] {
    return this.#serviceZones.get(service) ?? NONE;
  }

  /** Replicas of `service` per zone name, zones without any left out. */
  serviceZones(service: string): Map<string, number> {
    return new Map(this.serviceZoneCounts(service).map((k, z) => [this.zoneNames[z]!, k] as const).filter(([, k]) => k > 0));
  }

  /** Indices (ascending) of the nodes whose label `key` is `value` (any value when `value` is undefined). */
  withLabel(key: string, value?: string): Int32Array {
    const k = value === undefined ? `${key}\u0001` : `${key}\0${value}`;
    let ix = this.#labelIndex.get(k);
    if (!ix) {
      const out: number[] = [];
      for (let i = 0; i < this.nodes.length; i++) {
        const v = this.nodes[i]!.labels[key];
        if (v !== undefined && (value === undefined || v === value)) out.push(i);
      }
      ix = Int32Array.from(out);
      this.#labelIndex.set(k, ix);
    }
    return ix;
  }

  /** Records a container placed on node `i`. */
  add(i: number, load: Load): void {
    this.#apply(i, load, 1);
  }

  /** Forgets a container that left node `i` (the inverse of add). */
  release(i: number, load: Load): void {
    this.#apply(i, load, -1);
  }

  /** Replaces what changes only with the node itself (readiness, drain, labels, capacity); its load stays. */
  updateNode(s: NodeSnapshot): void {
    const i = this.#index.get(s.name);
    if (i === undefined) return;
    const oldZone = this.zoneOf[i]!;
    this.#setNode(i, s);
    const zone = this.zoneOf[i]!;
    if (oldZone !== zone) {
      for (const [svc, byNode] of this.#serviceNodes) {
        const k = byNode.get(i) ?? 0;
        if (k === 0) continue;
        this.#bumpZone(svc, oldZone, -k);
        this.#bumpZone(svc, zone, k);
      }
    }
    this.#labelIndex.clear();
  }

  #setNode(i: number, s: NodeSnapshot): void {
    const old = this.nodes[i];
    const zoneName = s.labels[TOPOLOGY_LABELS.zone] ?? '';
    this.nodes[i] = { name: s.name, ready: s.ready, unschedulable: s.unschedulable, labels: s.labels, zone: zoneName };
    this.#zonedNodes += Number(zoneName !== '') - Number(old !== undefined && old.zone !== '');
    let z = this.#zoneIds.get(zoneName);
    if (z === undefined) {
      z = this.zoneNames.push(zoneName) - 1;
      this.#zoneIds.set(zoneName, z);
    }
    this.zoneOf[i] = z;
    this.ready[i] = s.ready ? 1 : 0;
    this.cordoned[i] = s.unschedulable ? 1 : 0;
    this.capCpu[i] = s.capacity.cpus;
    this.capMem[i] = s.capacity.memoryBytes;
  }

  #apply(i: number, load: Load, sign: 1 | -1): void {
    this.allocCpu[i]! += sign * (load.cpus ?? 0);
    this.allocMem[i]! += sign * (load.memoryBytes ?? 0);
    if (load.service !== undefined) this.#count(load.service, i, sign);
    const ci = classIndex(load.workloadClass);
    if (ci >= 0) {
      this.classCount[ci]![i]! += sign;
      this.classTotal[i]! += sign;
    }
  }

  #count(service: string, i: number, k: number): void {
    let byNode = this.#serviceNodes.get(service);
    if (!byNode) this.#serviceNodes.set(service, (byNode = new Map()));
    const now = (byNode.get(i) ?? 0) + k;
    if (now > 0) byNode.set(i, now);
    else byNode.delete(i);
    this.#bumpZone(service, this.zoneOf[i]!, k);
  }

  #bumpZone(service: string, zone: number, k: number): void {
    let byZone = this.#serviceZones.get(service);
    if (!byZone) this.#serviceZones.set(service, (byZone = []));
    while (byZone.length <= zone) byZone.push(0);
    byZone[zone]! += k;
  }
}

const EMPTY: ReadonlyMap<number, number> = new Map();
const NONE: readonly number[] = [];
