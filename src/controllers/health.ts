/**
 * The health controller: turns lapsed node leases into Suspect, then Down after the fence grace, and
 * fails over what a Down node ran (see src/model/health.ts for the timeline). Failover moves a
 * container only when something else could legitimately run it: a service replica, or a container
 * with a restart policy; a container with a host-local volume stays (its data is on that host) and
 * says why. The containers controller places what failover unplaced, with a higher epoch.
 */
import type { Store } from '../store/index.ts';
import { mutate, remove } from '../store/index.ts';
import { isFerryError } from '../errors/index.ts';
import type { Container, ContainerStatus, DetectionTiming, NodeHealth, NodeHealthState, Node } from '../model/index.ts';
import { failoverRefusal, keys, keyName } from '../model/index.ts';
import { recordEvent } from './events.ts';
import type { Loop } from './loop.ts';

/** Options of the health controller. */
export interface HealthControllerOptions {
  readonly store: Store;
  readonly timing: DetectionTiming;
  readonly log: (msg: string) => void;
  /**
   * How often nodes are looked at anyway (default 500 ms). Besides, a lease that lapses (its alive key
   * deleted) is looked at at once, and a Suspect node again the moment its grace ends, so neither
   * step waits for a tick.
   */
  readonly tickMs?: number;
}

/**
 * Called by the heartbeat API: a Suspect node that beats again is Ready (compare-and-swap against the
 * controller's move to Down, so exactly one wins). Returns the state the agent must act on.
 */
export async function noteHeartbeat(store: Store, node: string): Promise<NodeHealthState> {
  for (;;) {
    const kv = await store.get<NodeHealth>(keys.nodeHealth(node));
    if (!kv || kv.value.state === 'Ready') return 'Ready';
    if (kv.value.state === 'Down') return 'Down';
    try {
      await store.update<NodeHealth>(keys.nodeHealth(node), { state: 'Ready', since: new Date().toISOString(), reason: 'heartbeats again' }, kv.modRevision);
      await recordEvent(store, { kind: 'NodeReady', object: `node/${node}`, message: `node ${node} heartbeats again (was Suspect since ${kv.value.since})` });
      return 'Ready';
    } catch (e) {
      if (!isFerryError(e, 'STORE_CONFLICT') && !isFerryError(e, 'STORE_NOT_FOUND')) throw e;
    }
  }
}

/** Moves the node's health from `from` (at `modRevision`, or absent) to `to`; false when it changed meanwhile. */
async function transition(store: Store, node: string, cur: { modRevision: number } | undefined, to: NodeHealth): Promise<boolean> {
  try {
    if (cur) await store.update(keys.nodeHealth(node), to, cur.modRevision);
    else await store.create(keys.nodeHealth(node), to);
    return true;
  } catch (e) {
    if (isFerryError(e, 'STORE_CONFLICT') || isFerryError(e, 'STORE_EXISTS') || isFerryError(e, 'STORE_NOT_FOUND')) return false;
    throw e;
  }
}

/** Starts the health controller. */
export function startHealthController(o: HealthControllerOptions): Loop {
  const { store, timing } = o;
  // When this manager first saw each node's lease missing: grace counts from then, never from a
  // time before this process started (a restarted manager gives every node the full grace).
  const missingSince = new Map<string, number>();
  // Containers already reported as staying on a Down node (once per node outage).
  const told = new Set<string>();
  let busy: Promise<void> = Promise.resolve();
  let stopped = false;
  // One pass at a time and at most one waiting behind it (it reads the newest state when it runs).
  let queued = false;
  const poke = (): void => {
    if (queued || stopped) return;
    queued = true;
    busy = busy.then(async () => { queued = false; if (!stopped) await pass(); }).catch((e: unknown) => o.log(`health controller: ${(e as Error).message}`));
  };
  // A pass at the end of the soonest grace under way.
  let graceTimer: NodeJS.Timeout | undefined;
  const armGrace = (): void => {
    clearTimeout(graceTimer);
    if (stopped) return;
    const ends = [...missingSince.values()].map((t) => t + timing.graceSeconds * 1000).filter((t) => t > Date.now());
    if (ends.length > 0) graceTimer = setTimeout(poke, Math.min(...ends) - Date.now() + 5);
  };

  const pass = async (): Promise<void> => {
    const [nodes, alive, health] = await Promise.all([store.list<Node>(keys.nodes), store.list(keys.alive), store.list<NodeHealth>(keys.health)]);
    const up = new Set(alive.items.map((kv) => keyName(kv.key)));
    const byNode = new Map(health.items.map((kv) => [keyName(kv.key), kv]));
    let containers: Container[] | undefined;
    const list = async (): Promise<Container[]> => (containers ??= (await store.list<Container>(keys.containers)).items.map((kv) => kv.value));
    for (const { value: n } of nodes.items) {
      const name = n.metadata.name;
      const h = byNode.get(name);
      const state = h?.value.state ?? 'Ready';
      if (up.has(name)) {
        missingSince.delete(name);
        if (state === 'Down' && !(await list()).some((c) => c.placement?.node === name && !c.metadata.deleting && failoverRefusal(c.spec) === undefined)) {
          // Back, and nothing that failed over is still placed here: it may take containers again.
          if (await transition(store, name, h, { state: 'Ready', since: new Date().toISOString(), reason: 'back after being Down; its failed-over containers run elsewhere' })) {
            for (const k of [...told]) if (k.startsWith(`${name}/`)) told.delete(k);
            await recordEvent(store, { kind: 'NodeReady', object: `node/${name}`, message: `node ${name} is back and Ready` });
          }
        }
        continue;
      }
      const since = missingSince.get(name) ?? Date.now();
      missingSince.set(name, since);
      if (state === 'Ready') {
        const reason = `no heartbeat for ${timing.leaseTtlSeconds} s (its lease lapsed)`;
        if (await transition(store, name, h, { state: 'Suspect', since: new Date().toISOString(), reason })) {
          o.log(`node ${name} is Suspect: ${reason}`);
          await recordEvent(store, { kind: 'NodeSuspect', object: `node/${name}`, message: `node ${name} is Suspect: ${reason}` });
        }
        continue;
      }
      const graceOver = Date.now() - since >= timing.graceSeconds * 1000;
      if (state === 'Suspect' && graceOver) {
        const reason = `no heartbeat for ${timing.leaseTtlSeconds + timing.graceSeconds} s; its agent has fenced itself by now`;
        if (!(await transition(store, name, h, { state: 'Down', since: new Date().toISOString(), reason }))) continue;
        o.log(`node ${name} is Down: ${reason}`);
        await recordEvent(store, { kind: 'NodeDown', object: `node/${name}`, message: `node ${name} is Down: ${reason}` });
      }
      if (state === 'Down' || (state === 'Suspect' && graceOver)) {
        for (const c of await list()) if (c.placement?.node === name && !c.metadata.deleting) await failOver(c, name);
      }
    }
    armGrace();
  };

  const failOver = async (c: Container, node: string): Promise<void> => {
    const name = c.metadata.name;
    const refusal = failoverRefusal(c.spec);
    if (refusal !== undefined) {
      if (told.has(`${node}/${name}`)) return;
      told.add(`${node}/${name}`);
      o.log(`container ${name} stays on Down node ${node}: ${refusal}`);
      await recordEvent(store, { kind: 'FailoverRefused', object: `container/${name}`, message: `${name} stays on Down node ${node}: ${refusal}` });
      return;
    }
    const epoch = c.placement!.epoch;
    const moved = await mutate<Container>(store, keys.container(name), (cur) => {
      if (cur.metadata.uid !== c.metadata.uid || cur.placement?.node !== node || cur.placement.epoch !== epoch || cur.metadata.deleting) return undefined;
      cur.failover = { from: node, epoch, at: new Date().toISOString() };
      delete cur.placement;
      return cur;
    });
    if (moved.value.placement) return;
    // The Down node must not find it when it returns; the containers controller places it anew.
    await remove(store, keys.assignment(node, name));
    const st = await store.get<ContainerStatus>(keys.status(name));
    if (st && st.value.uid === c.metadata.uid && st.value.node === node) {
      await store.update<ContainerStatus>(keys.status(name), { ...st.value, phase: 'pending', pid: 0, message: `failing over: node ${node} is Down`, updatedAt: new Date().toISOString() }, st.modRevision).catch(() => undefined);
    }
    o.log(`failing over ${name} from Down node ${node} (epoch ${epoch} fenced)`);
    await recordEvent(store, { kind: 'Failover', object: `container/${name}`, message: `${name} fails over from Down node ${node}; epoch ${epoch} is fenced, the new placement gets ${epoch + 1}` });
  };

  const timer = setInterval(poke, o.tickMs ?? 500);
  // Lapsed leases: their alive keys are deleted when the lease expires.
  const ac = new AbortController();
  const lapses = (async () => {
    while (!stopped) {
      try {
        for await (const ev of store.watch(keys.alive, { signal: ac.signal })) if (ev.type === 'delete') poke();
      } catch {
        // The store closed or the watch broke: the tick still looks; try the watch again shortly.
      }
      if (!stopped) await new Promise((r) => setTimeout(r, 500));
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      clearInterval(timer);
      clearTimeout(graceTimer);
      ac.abort();
      await lapses;
      await busy;
    },
    idle: () => busy,
  };
}
