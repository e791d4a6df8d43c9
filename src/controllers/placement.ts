/**
 * Placement for the containers controller, behind one door (`Placer`). The full scan lists the whole
 * cluster from the store for every container (the original path: stateless, kept for tests and the
 * bench). `ClusterPlacer` builds a `Scheduler` from one list and moves it with every placement it
 * writes; watches on the containers, nodes, alive and health prefixes drop it when anything else
 * changes what it counted, and the next placement lists again. Both decide with the same full-scan
 * scheduler, so decisions and their reasons are the same.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { KeyValue, Store, WatchEvent } from '../store/index.ts';
import type { Container, Node, NodeHealth } from '../model/index.ts';
import { keys, keyName, SERVICE_LABELS } from '../model/index.ts';
import { place, Scheduler, type NodeSnapshot, type PlacementDecision, type PlacementRequest } from '../scheduler/index.ts';

/** A decision that found a node. */
export type Placed = Extract<PlacementDecision, { ok: true }>;

/**
 * Writes a decided placement (the address lease, then the compare-and-swap of `placement`); returns
 * the container as written, or undefined when it did not write it (the container changed meanwhile).
 */
export type PlacementWrite = (decision: Placed) => Promise<KeyValue<Container> | undefined>;

/** Decides where containers go and has the decisions written, one at a time where that matters. */
export interface Placer {
  /** Decides for `c`; when a node fits, runs `write` before any other placement is decided. */
  place(c: Container, write: PlacementWrite): Promise<PlacementDecision>;
  /** Ends its watches (nothing for a stateless placer). */
  stop(): Promise<void>;
}

/** What a placed container counts for on its node (the figures the scheduler's state adds up). */
interface Count {
  readonly node: string;
  readonly cpus: number;
  readonly memoryBytes: number;
  readonly service: string | undefined;
  readonly workloadClass: string | undefined;
}

/** The scheduler's request for a container: its resources, pin, service and scheduling options. */
export function placementRequest(c: Container): PlacementRequest {
  return { name: c.metadata.name, memoryBytes: c.spec.resources.memoryBytes, cpus: c.spec.resources.cpus, node: c.spec.node, service: c.spec.labels[SERVICE_LABELS.service], ...c.spec.scheduling };
}

/** What `c` counts for where it is placed, or undefined when it is not placed. */
function countOf(c: Container): Count | undefined {
  if (!c.placement) return undefined;
  return {
    node: c.placement.node, cpus: c.spec.resources.cpus ?? 0, memoryBytes: c.spec.resources.memoryBytes ?? 0,
    service: c.spec.labels[SERVICE_LABELS.service], workloadClass: c.spec.scheduling?.workloadClass,
  };
}

function sameCount(a: Count | undefined, b: Count | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.node === b.node && a.cpus === b.cpus && a.memoryBytes === b.memoryBytes && a.service === b.service && a.workloadClass === b.workloadClass;
}

/** The cluster as listed from the store, with the revision each prefix was read at. */
export interface ClusterListing {
  readonly nodes: NodeSnapshot[];
  /** Container name → what it counts for, for every placed container. */
  readonly counted: Map<string, Count>;
  /** Prefix → revision of its list. */
  readonly listedAt: Map<string, number>;
}

/** Lists nodes, alive keys, health records and containers, and builds the scheduler's view of the nodes. */
export async function listCluster(store: Store): Promise<ClusterListing> {
  const [nodes, alive, containers, health] = await Promise.all([
    store.list<Node>(keys.nodes), store.list(keys.alive), store.list<Container>(keys.containers), store.list<NodeHealth>(keys.health),
  ]);
  // A node back from Down takes nothing new until its failed-over containers are settled (health says Ready).
  const down = new Set(health.items.filter((kv) => kv.value.state !== 'Ready').map((kv) => keyName(kv.key)));
  const up = new Set(alive.items.map((kv) => keyName(kv.key)).filter((n) => !down.has(n)));
  const counted = new Map<string, Count>();
  const alloc = new Map<string, { cpus: number; memoryBytes: number; services: Record<string, number>; workloads: Record<string, number> }>();
  for (const { value: c } of containers.items) {
    const k = countOf(c);
    if (!k) continue;
    counted.set(c.metadata.name, k);
    const a = alloc.get(k.node) ?? { cpus: 0, memoryBytes: 0, services: {}, workloads: {} };
    a.cpus += k.cpus;
    a.memoryBytes += k.memoryBytes;
    if (k.service !== undefined) a.services[k.service] = (a.services[k.service] ?? 0) + 1;
    if (k.workloadClass !== undefined) a.workloads[k.workloadClass] = (a.workloads[k.workloadClass] ?? 0) + 1;
    alloc.set(k.node, a);
  }
  const snapshots = nodes.items.map(({ value: n }): NodeSnapshot => {
    const a = alloc.get(n.metadata.name);
    return {
      name: n.metadata.name,
      ready: up.has(n.metadata.name),
      unschedulable: n.spec.unschedulable,
      labels: n.metadata.labels,
      capacity: n.status.capacity,
      allocated: { cpus: a?.cpus ?? 0, memoryBytes: a?.memoryBytes ?? 0 },
      services: a?.services ?? {},
      workloads: a?.workloads ?? {},
    };
  });
  const listedAt = new Map([[keys.nodes, nodes.revision], [keys.alive, alive.revision], [keys.containers, containers.revision], [keys.health, health.revision]]);
  return { nodes: snapshots, counted, listedAt };
}

/** The original placement: every container decided over a fresh list of the whole cluster. */
export function fullScanPlacer(store: Store): Placer {
  return {
    async place(c, write) {
      const d = place(placementRequest(c), (await listCluster(store)).nodes);
      if (d.ok) await write(d);
      return d;
    },
    stop: async () => undefined,
  };
}

/** The prefixes whose changes can make a ClusterPlacer's scheduler wrong. */
const WATCHED = [keys.containers, keys.nodes, keys.alive, keys.health] as const;

/** How many times a ClusterPlacer listed the cluster and decided (tests and the bench read them). */
export interface PlacerStats {
  builds: number;
  decisions: number;
}

/**
 * Places on a kept `Scheduler`. Exact for its own placements: decide, lease and write run under
 * one lock, and the chosen node's room is taken in memory at the decision. Anything else that
 * changes a counted figure (a node, its liveness or health; a container placed, moved, resized or
 * deleted by someone else) drops the scheduler when its watch event arrives, and the next placement
 * lists again; a placement that was not written is taken back, one written with other figures drops it.
 */
export class ClusterPlacer implements Placer {
  /** Builds and decisions so far. */
  readonly stats: PlacerStats = { builds: 0, decisions: 0 };
  readonly #store: Store;
  readonly #onError: ((what: string, e: unknown) => void) | undefined;
  readonly #ac = new AbortController();
  #scheduler: Scheduler | undefined;
  #counted = new Map<string, Count>();
  /** Container name → revision of the write our count of it stems from (events at or before it are already in it). */
  readonly #ownWrites = new Map<string, number>();
  #listedAt = new Map<string, number>();
  /** Prefix → revision its running watch started after; absent while that watch is down. */
  readonly #watchFrom = new Map<string, number>();
  /** Events that arrived while a build was listing (looked at once it is installed). */
  #backlog: { prefix: string; ev: WatchEvent }[] | undefined;
  /** The container whose placement is being written, and its events meanwhile (looked at once the write's revision is known). */
  #inFlight: { name: string; events: WatchEvent[] } | undefined;
  #lock: Promise<void> = Promise.resolve();
  readonly #watches: Promise<void>[];
  /** Settles once every watch has started (or failed its first start): a build before that could not be kept. */
  readonly #started: Promise<unknown>;

  /** `onError` hears of watches that broke (they restart; placements list the cluster meanwhile). */
  constructor(store: Store, onError?: (what: string, e: unknown) => void) {
    this.#store = store;
    this.#onError = onError;
    const starts: Promise<void>[] = [];
    this.#watches = WATCHED.map((p) => {
      let started!: () => void;
      starts.push(new Promise<void>((r) => { started = r; }));
      return this.#watch(p, started);
    });
    this.#started = Promise.all(starts);
  }

  /** Decides on the kept scheduler (listing first when it was dropped) and writes under the lock. */
  async place(c: Container, write: PlacementWrite): Promise<PlacementDecision> {
    return this.#exclusive(async () => {
      await this.#started;
      if (!this.#scheduler) await this.#build();
      const s = this.#scheduler!;
      // Without every watch running since before the list, nothing would tell it went stale: use it once.
      if (!this.#watched()) this.#drop();
      const req = placementRequest(c);
      this.stats.decisions++;
      const d = s.place(req);
      if (!d.ok) return d;
      const name = c.metadata.name;
      const want: Count = { node: d.node, cpus: req.cpus ?? 0, memoryBytes: req.memoryBytes ?? 0, service: req.service, workloadClass: req.workloadClass };
      const before = this.#counted.get(name);
      this.#counted.set(name, want);
      this.#inFlight = { name, events: [] };
      let written: KeyValue<Container> | undefined;
      try {
        written = await write(d);
      } finally {
        const { events } = this.#inFlight;
        this.#inFlight = undefined;
        if (!written) {
          // Not written (placed meanwhile, say by the other loop): take back exactly what was added;
          // whatever the store holds instead reaches us as a watch event.
          s.release(d.node, req);
          if (before) this.#counted.set(name, before);
          else this.#counted.delete(name);
        } else if (sameCount(countOf(written.value), want)) {
          this.#ownWrites.set(name, written.modRevision);
        } else {
          this.#drop(); // written with other figures than decided (its spec changed meanwhile)
        }
        for (const ev of events) this.#see(keys.containers, ev);
      }
      return d;
    });
  }

  /** True while it keeps a scheduler (false: the next placement lists the cluster first). */
  get fresh(): boolean {
    return this.#scheduler !== undefined;
  }

  /** Ends the watches. */
  async stop(): Promise<void> {
    this.#ac.abort();
    await Promise.allSettled(this.#watches);
  }

  async #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.#lock;
    let release!: () => void;
    this.#lock = new Promise<void>((r) => { release = r; });
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }

  async #build(): Promise<void> {
    this.#backlog = [];
    try {
      const listing = await listCluster(this.#store);
      this.stats.builds++;
      this.#scheduler = new Scheduler(listing.nodes, { scoreLimit: 'all' });
      this.#counted = listing.counted;
      this.#listedAt = listing.listedAt;
      this.#ownWrites.clear();
    } finally {
      const backlog = this.#backlog;
      this.#backlog = undefined;
      for (const { prefix, ev } of backlog) this.#see(prefix, ev);
    }
  }

  /** True when every watch started at or before the revision its prefix was listed at. */
  #watched(): boolean {
    return WATCHED.every((p) => {
      const from = this.#watchFrom.get(p);
      return from !== undefined && from <= (this.#listedAt.get(p) ?? -1);
    });
  }

  #drop(): void {
    this.#scheduler = undefined;
  }

  /** Looks at one change: drops the scheduler when the change is not already in what it counts. */
  #see(prefix: string, ev: WatchEvent): void {
    if (this.#backlog) {
      this.#backlog.push({ prefix, ev });
      return;
    }
    // Dropped: the next build lists after this event was committed, so it will be in the list.
    if (!this.#scheduler) return;
    if (ev.revision <= (this.#listedAt.get(prefix) ?? Infinity)) return;
    if (prefix !== keys.containers) {
      this.#drop();
      return;
    }
    const name = keyName(ev.kv.key);
    if (this.#inFlight?.name === name) {
      this.#inFlight.events.push(ev);
      return;
    }
    if (ev.revision <= (this.#ownWrites.get(name) ?? 0)) return;
    const now = ev.type === 'put' ? countOf(ev.kv.value as Container) : undefined;
    if (!sameCount(now, this.#counted.get(name))) this.#drop();
  }

  async #watch(prefix: string, started: () => void): Promise<void> {
    const signal = this.#ac.signal;
    while (!signal.aborted) {
      try {
        const from = await this.#store.revision();
        this.#watchFrom.set(prefix, from);
        started();
        for await (const ev of this.#store.watch(prefix, { afterRevision: from, signal })) this.#see(prefix, ev);
      } catch (e) {
        if (!signal.aborted) this.#onError?.(`placement watch ${prefix}`, e);
      } finally {
        started();
        // It might have missed changes (compacted history, a store hiccup): list again once it is back.
        this.#watchFrom.delete(prefix);
        this.#drop();
      }
      await sleep(500, undefined, { signal }).catch(() => undefined);
    }
  }
}
