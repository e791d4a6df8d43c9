/**
 * The containers controller: places new containers (through the scheduler), keeps each node's
 * assignments in step with the specs, and finishes removals once the agent has cleaned up.
 */
import type { KeyValue, Store } from '../store/index.ts';
import { mutate, put, remove } from '../store/index.ts';
import { isFerryError } from '../errors/index.ts';
import type { Assignment, AssignmentNetwork, Container, ContainerStatus, NetworkAddressing } from '../model/index.ts';
import { keys, keyName, macFromIp } from '../model/index.ts';
import type { NodeSnapshot } from '../scheduler/index.ts';
import { startLoop, type Loop } from './loop.ts';
import { ClusterPlacer, fullScanPlacer, listCluster, type Placer } from './placement.ts';
import { allocateAddress, clusterNetwork, containerOwner, networkAddressing, nodeOwner, releaseAddresses, sweepLeases } from './ipam.ts';

/** Builds the scheduler's view of the nodes from the store. */
export async function nodeSnapshots(store: Store): Promise<NodeSnapshot[]> {
  return (await listCluster(store)).nodes;
}

function sameAssignment(a: Assignment, b: Assignment): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Reconciles one container by name; `placer` decides placements (default: a full scan of a fresh list). */
export async function reconcileContainer(store: Store, name: string, placer: Placer = fullScanPlacer(store)): Promise<void> {
  const kv = await store.get<Container>(keys.container(name));
  if (!kv) {
    // Gone: no node may keep running it.
    const { items } = await store.list<Assignment>(keys.allAssignments);
    for (const a of items) if (keyName(a.key) === name) await remove(store, a.key);
    return;
  }
  const c = kv.value;
  const placement = c.placement;

  if (c.metadata.deleting) {
    if (!placement) {
      await finishRemoval(store, c, kv.modRevision);
      return;
    }
    const aKey = keys.assignment(placement.node, name);
    const status = (await store.get<ContainerStatus>(keys.status(name)))?.value;
    const nodeReady = (await store.get(keys.nodeAlive(placement.node))) !== undefined;
    if (!nodeReady || !status || status.uid !== c.metadata.uid) {
      // The agent has cleaned up (or its node is gone: it removes orphans when it returns).
      await remove(store, aKey);
      if (status && status.uid === c.metadata.uid) await remove(store, keys.status(name));
      await finishRemoval(store, c, kv.modRevision);
      return;
    }
    await writeAssignment(store, aKey, { ...(await assignmentOf(store, c, placement.epoch, placement.node)), remove: c.metadata.force ? 'force' : 'graceful' });
    return;
  }

  if (!placement) {
    const net = await networkAddressing(store, c.spec.network);
    if (c.spec.network !== undefined && !net) {
      await reportPending(store, c, await missingNetwork(store, c.spec.network));
      return;
    }
    // Typed by a cast: the write below assigns it, out of sight of the compiler's narrowing.
    let placed = undefined as KeyValue<Container> | undefined;
    const decision = await placer.place(c, async (d) => {
      // Leased before the placement is written, so no agent ever sees the container without its address.
      const ip = net ? await allocateAddress(store, net, containerOwner(c.metadata.uid)) : undefined;
      let wrote = false;
      placed = await mutate<Container>(store, keys.container(name), (cur) => {
        wrote = false;
        if (cur.metadata.uid !== c.metadata.uid || cur.placement) return undefined;
        // After a failover the fenced copy's epoch is stale: the new placement is one above it.
        const epoch = (cur.failover?.epoch ?? 0) + 1;
        const reason = cur.failover ? `failover from ${cur.failover.from} (Down): ${d.reason}` : d.reason;
        cur.placement = { node: d.node, epoch, scheduledAt: new Date().toISOString(), reason };
        if (ip) cur.network = { ip };
        wrote = true;
        return cur;
      });
      return wrote ? placed : undefined;
    });
    if (!decision.ok) {
      await reportPending(store, c, `no ready node can run this container: ${decision.reason}`);
      return;
    }
    // Assign in the same pass (not on the next watch event): one hop less between the API call and the agent.
    if (placed?.value.placement && !placed.value.metadata.deleting) {
      const p = placed.value.placement;
      await writeAssignment(store, keys.assignment(p.node, name), await assignmentOf(store, placed.value, p.epoch, p.node));
    }
    return;
  }
  await writeAssignment(store, keys.assignment(placement.node, name), await assignmentOf(store, c, placement.epoch, placement.node));
}

/** Why a container on network `name` cannot be placed yet. */
async function missingNetwork(store: Store, name: string): Promise<string> {
  if (!(await clusterNetwork(store))) return `network "${name}" needs a cluster network, and this cluster has none (start the manager with --cluster-subnet CIDR --vni N)`;
  return `network "${name}" does not exist; create it with \`ferry network create ${name}\``;
}

/**
 * What `node` must run for the container: its spec at `epoch`, with its network interface when it
 * holds an address. The one builder of assignments: placement, removal and the migration executor
 * (the target's assignment) all use it, so the address, network and MAC follow the container.
 * Leases the node's own address in the container's network (idempotent).
 */
export async function assignmentOf(store: Store, c: Container, epoch: number, node: string): Promise<Assignment> {
  const a: Assignment = { name: c.metadata.name, uid: c.metadata.uid, generation: c.metadata.generation, epoch, spec: c.spec };
  if (!c.network) return a;
  // Undefined only when its network was removed in a race with its create: it still runs (or is removed) without one.
  const net = await networkAddressing(store, c.spec.network);
  if (net) a.network = await interfaceOf(store, net, c.network.ip, node);
  return a;
}

/** The interface of address `ip` in `net` on `node`, with the node's own address there. */
async function interfaceOf(store: Store, net: NetworkAddressing, ip: string, node: string): Promise<AssignmentNetwork> {
  const hostIp = await allocateAddress(store, net, nodeOwner(node, net.name));
  return { ip, prefixLength: net.prefixLength, gateway: net.gateway, mac: macFromIp(ip), name: net.name, vni: net.vni, subnet: net.subnet, hostIp };
}

async function writeAssignment(store: Store, key: string, a: Assignment): Promise<void> {
  const cur = await store.get<Assignment>(key);
  if (cur && sameAssignment(cur.value, a)) return;
  await put(store, key, a);
}

/** Deletes the container unless it changed meanwhile, then frees its address. */
async function finishRemoval(store: Store, c: Container, modRevision: number): Promise<void> {
  try {
    await store.delete(keys.container(c.metadata.name), modRevision);
  } catch (e) {
    if (isFerryError(e, 'STORE_CONFLICT')) return; // changed meanwhile: the next reconcile finishes it
    if (!isFerryError(e, 'STORE_NOT_FOUND')) throw e;
  }
  await releaseAddresses(store, containerOwner(c.metadata.uid));
}

/** Records why a container waits, where `ferry ps` shows it (only while no agent has reported). */
async function reportPending(store: Store, c: Container, message: string): Promise<void> {
  const cur = await store.get<ContainerStatus>(keys.status(c.metadata.name));
  if (cur && cur.value.uid === c.metadata.uid && cur.value.message === message) return;
  if (cur && cur.value.uid === c.metadata.uid && cur.value.node !== '') return;
  const st: ContainerStatus = {
    name: c.metadata.name, uid: c.metadata.uid, node: '', epoch: 0, runtimeId: '', phase: 'pending',
    observedGeneration: 0, pid: 0, restartCount: 0, message, updatedAt: new Date().toISOString(),
  };
  await put(store, keys.status(c.metadata.name), st);
}

/** How the containers controller decides placements. */
export interface ContainersControllerOptions {
  /**
   * `incremental` (the default): one kept scheduler, listed again only when something it counted
   * changed; `full-scan`: the whole cluster listed for every container (the original path, for comparison).
   */
  readonly placement?: 'incremental' | 'full-scan';
}

/**
 * Starts the containers controller. Node and network changes re-queue every unplaced container
 * (capacity or its network may have appeared) and free the addresses of containers and networks
 * that are gone (also at start, the first pass).
 */
export function startContainersController(store: Store, onError?: (name: string, e: unknown) => void, options: ContainersControllerOptions = {}): Loop {
  // One placer for both loops: its lock keeps their placements from sharing room.
  const placer: Placer = options.placement === 'full-scan' ? fullScanPlacer(store) : new ClusterPlacer(store, onError);
  const reconcile = (n: string): Promise<void> => reconcileContainer(store, n, placer);
  const listNames = async (): Promise<string[]> => {
    const [cs, as] = await Promise.all([store.list<Container>(keys.containers), store.list(keys.allAssignments)]);
    return [...new Set([...cs.items.map((kv) => kv.value.metadata.name), ...as.items.map((kv) => keyName(kv.key))])];
  };
  const main = startLoop({ store, prefixes: [keys.containers, keys.statuses], listNames, reconcile, onError });
  const nodes = startLoop({
    // Networks too: a container waits for its network, and a removed one's host addresses are freed.
    store, prefixes: [keys.alive, keys.nodes, keys.networks, keys.health], listNames: async () => ['*'], onError,
    reconcile: async () => {
      await sweepLeases(store);
      const { items } = await store.list<Container>(keys.containers);
      // Unplaced containers may now fit; removals on a node that went away can now finish.
      for (const kv of items) if (!kv.value.placement || kv.value.metadata.deleting) await reconcile(kv.value.metadata.name);
    },
  });
  return {
    stop: async () => { await Promise.all([main.stop(), nodes.stop()]); await placer.stop(); },
    idle: async () => { await main.idle(); await nodes.idle(); },
  };
}
