/**
 * bench/scheduler's simulated clusters: nodes of varied sizes in three regions of three zones with
 * disk and GPU labels, services with replicas, constraints, strategies and workload classes, the
 * containers already placed (synthesized: a random node that fits each one), and the stream of new
 * placements to time. Seeded, so every run and every mode sees the same cluster and requests.
 */
import { TOPOLOGY_LABELS, WORKLOAD_CLASSES, type NodeSnapshot, type PlacementRequest } from '../../src/scheduler/index.ts';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** A seeded generator of floats in [0, 1) (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;

/** What every replica of one service asks for. */
export interface ServiceTemplate {
  readonly name: string;
  readonly cpus: number;
  readonly memoryBytes: number;
  readonly strategy: 'spread' | 'binpack';
  readonly constraints?: string[];
  readonly onePerHost?: boolean;
  readonly workloadClass: string;
}

/** A simulated cluster: node snapshots with their load, and the services whose replicas they run. */
export interface SimCluster {
  readonly nodes: NodeSnapshot[];
  readonly services: ServiceTemplate[];
  /** Containers placed while building it (those that found no node are dropped, and counted here). */
  readonly placed: number;
  readonly dropped: number;
}

const REGIONS = [['eu', 0.4], ['us', 0.4], ['ap', 0.2]] as const;
const CONSTRAINTS: readonly (readonly [string[] | undefined, number])[] = [
  [undefined, 0.6], [['region==eu'], 0.1], [['region==us', 'disk==ssd'], 0.05], [['disk==ssd'], 0.1], [['disk!=hdd'], 0.1], [['gpu'], 0.05],
];

function weighted<T>(r: () => number, xs: readonly (readonly [T, number])[]): T {
  let x = r();
  for (const [v, w] of xs) if ((x -= w) < 0) return v;
  return xs[xs.length - 1]![0];
}

/** The services: resource sizes, strategy (4 in 5 spread), constraints (2 in 5), one per host (1 in 10), a class each. */
function services(r: () => number, count: number): ServiceTemplate[] {
  return Array.from({ length: count }, (_, k) => {
    const constraints = weighted(r, CONSTRAINTS);
    return {
      name: `svc-${String(k).padStart(4, '0')}`,
      cpus: pick(r, [0.1, 0.25, 0.25, 0.5, 1]),
      memoryBytes: pick(r, [128, 256, 512, 512, 1024, 2048]) * MiB,
      strategy: r() < 0.8 ? 'spread' : 'binpack',
      ...(constraints ? { constraints } : {}),
      ...(r() < 0.1 ? { onePerHost: true } : {}),
      workloadClass: pick(r, WORKLOAD_CLASSES),
    };
  });
}

/** True when a node with `labels` satisfies the (bench's own, simple) constraints. */
function fits(labels: Record<string, string>, constraints: readonly string[] | undefined): boolean {
  for (const c of constraints ?? []) {
    const [k, v] = c.split(/==|!=/) as [string, string | undefined];
    const key = k === 'region' ? TOPOLOGY_LABELS.region : k;
    if (v === undefined ? labels[key] === undefined : c.includes('!=') ? labels[key] === v : labels[key] !== v) return false;
  }
  return true;
}

/** Builds a cluster of `nodeCount` nodes with `containers` containers of `serviceCount` services on them. */
export function buildCluster(seed: number, nodeCount: number, containers: number, serviceCount: number): SimCluster {
  const r = rng(seed);
  // Sized so the pre-placed load fills about half of the cluster whatever the node count.
  const perNode = containers / nodeCount;
  const scale = Math.max(1, Math.ceil(perNode / 25));
  const labels: Record<string, string>[] = [];
  const cap: { cpus: number; memoryBytes: number }[] = [];
  for (let i = 0; i < nodeCount; i++) {
    const region = weighted(r, REGIONS);
    labels.push({
      [TOPOLOGY_LABELS.region]: region, [TOPOLOGY_LABELS.zone]: `${region}-${pick(r, ['a', 'b', 'c'])}`,
      disk: r() < 0.6 ? 'ssd' : 'hdd', ...(r() < 0.05 ? { gpu: 'a100' } : {}),
    });
    const cpus = pick(r, [8, 16, 16, 32, 48]) * scale;
    cap.push({ cpus, memoryBytes: cpus * pick(r, [2, 4, 8]) * GiB });
  }
  const svc = services(r, serviceCount);
  const alloc = cap.map(() => ({ cpus: 0, memoryBytes: 0 }));
  const perService = cap.map(() => new Map<string, number>());
  const perClass = cap.map(() => new Map<string, number>());
  let placed = 0;
  let dropped = 0;
  for (let c = 0; c < containers; c++) {
    const s = pick(r, svc);
    let ok = false;
    // A random node that fits: a few tries, as a crowded real cluster would have it.
    for (let t = 0; t < 20 && !ok; t++) {
      const i = Math.floor(r() * nodeCount);
      const a = alloc[i]!;
      if (a.cpus + s.cpus > cap[i]!.cpus || a.memoryBytes + s.memoryBytes > cap[i]!.memoryBytes) continue;
      if (!fits(labels[i]!, s.constraints) || (s.onePerHost && perService[i]!.has(s.name))) continue;
      a.cpus += s.cpus;
      a.memoryBytes += s.memoryBytes;
      perService[i]!.set(s.name, (perService[i]!.get(s.name) ?? 0) + 1);
      perClass[i]!.set(s.workloadClass, (perClass[i]!.get(s.workloadClass) ?? 0) + 1);
      ok = true;
    }
    if (ok) placed++;
    else dropped++;
  }
  const nodes: NodeSnapshot[] = cap.map((capacity, i) => ({
    name: `node-${String(i).padStart(5, '0')}`,
    // A few nodes are down or cordoned, as in any real cluster.
    ready: r() >= 0.01,
    unschedulable: r() < 0.01,
    labels: labels[i]!,
    capacity,
    allocated: alloc[i]!,
    services: Object.fromEntries(perService[i]!),
    workloads: Object.fromEntries(perClass[i]!),
  }));
  return { nodes, services: svc, placed, dropped };
}

/** `count` new placements: replicas of the services (one in five from 50 big services), a few pinned or asking for a region or zone. */
export function requestStream(seed: number, cluster: SimCluster, count: number): PlacementRequest[] {
  const r = rng(seed);
  const hot = cluster.services.slice(0, 50);
  return Array.from({ length: count }, (_, k) => {
    const s = r() < 0.2 ? pick(r, hot) : pick(r, cluster.services);
    const req: PlacementRequest = {
      name: `${s.name}-r${k}`, service: s.name, cpus: s.cpus, memoryBytes: s.memoryBytes, strategy: s.strategy, workloadClass: s.workloadClass,
      ...(s.constraints ? { constraints: s.constraints } : {}), ...(s.onePerHost ? { onePerHost: true } : {}),
    };
    const x = r();
    if (x < 0.01) return { ...req, node: pick(r, cluster.nodes).name };
    if (x < 0.04) return { ...req, region: pick(r, ['eu', 'us', 'ap']) };
    if (x < 0.06) return { ...req, zone: `${pick(r, ['eu', 'us', 'ap'])}-${pick(r, ['a', 'b', 'c'])}` };
    return req;
  });
}
