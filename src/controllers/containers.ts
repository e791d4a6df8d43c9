/**
 * The containers controller: places new containers (through the scheduler), keeps each node's
 * assignments in step with the specs, and finishes removals once the agent has cleaned up.
 */
import type { Store } from '../store/index.ts';
import { mutate, put, remove } from '../store/index.ts';
import { isFerryError } from '../errors/index.ts';
import type { Assignment, AssignmentNetwork, Container, ContainerStatus, NetworkAddressing, Node, NodeHealth } from '../model/index.ts';
import { keys, keyName, macFromIp, SERVICE_LABELS } from '../model/index.ts';
import { place, type NodeSnapshot } from '../scheduler/index.ts';
import { startLoop, type Loop } from './loop.ts';
import { allocateAddress, clusterNetwork, containerOwner, networkAddressing, nodeOwner, releaseAddresses, sweepLeases } from './ipam.ts';

/** Builds the scheduler's view of the nodes from the store. */
export async function nodeSnapshots(store: Store): Promise<NodeSnapshot[]> {
  const [nodes, alive, containers, health] = await Promise.all([
    store.list<Node>(keys.nodes), store.list(keys.alive), store.list<Container>(keys.containers), store.list<NodeHealth>(keys.health),
  ]);
  // A node back from Down takes nothing new until its failed-over containers are settled (health says Ready).
  const down = new Set(health.items.filter((kv) => kv.value.state !== 'Ready').map((kv) => keyName(kv.key)));
  const up = new Set(alive.items.map((kv) => keyName(kv.key)).filter((n) => !down.has(n)));
  const alloc = new Map<string, { cpus: number; memoryBytes: number; services: Record<string, number>; workloads: Record<string, number> }>();
  for (const { value: c } of containers.items) {
    if (!c.placement) continue;
    const a = alloc.get(c.placement.node) ?? { cpus: 0, memoryBytes: 0, services: {}, workloads: {} };
    a.cpus += c.spec.resources.cpus ?? 0;
    a.memoryBytes += c.spec.resources.memoryBytes ?? 0;
    const service = c.spec.labels[SERVICE_LABELS.service];
    if (service !== undefined) a.services[service] = (a.services[service] ?? 0) + 1;
    const cls = c.spec.scheduling?.workloadClass;
    if (cls !== undefined) a.workloads[cls] = (a.workloads[cls] ?? 0) + 1;
    alloc.set(c.placement.node, a);
  }
  return nodes.items.map(({ value: n }) => {
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
}

function sameAssignment(a: Assignment, b: Assignment): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Reconciles one container by name. */
export async function reconcileContainer(store: Store, name: string): Promise<void> {
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
    const decision = place(
      { name, memoryBytes: c.spec.resources.memoryBytes, cpus: c.spec.resources.cpus, node: c.spec.node, service: c.spec.labels[SERVICE_LABELS.service], ...c.spec.scheduling },
      await nodeSnapshots(store),
    );
    if (!decision.ok) {
      await reportPending(store, c, `no ready node can run this container: ${decision.reason}`);
      return;
    }
    // Leased before the placement is written, so no agent ever sees the container without its address.
    const ip = net ? await allocateAddress(store, net, containerOwner(c.metadata.uid)) : undefined;
    const placed = await mutate<Container>(store, keys.container(name), (cur) => {
      if (cur.metadata.uid !== c.metadata.uid || cur.placement) return undefined;
      // After a failover the fenced copy's epoch is stale: the new placement is one above it.
      const epoch = (cur.failover?.epoch ?? 0) + 1;
      const reason = cur.failover ? `failover from ${cur.failover.from} (Down): ${decision.reason}` : decision.reason;
      cur.placement = { node: decision.node, epoch, scheduledAt: new Date().toISOString(), reason };
      if (ip) cur.network = { ip };
      return cur;
    });
    // Assign in the same pass (not on the next watch event): one hop less between the API call and the agent.
    if (placed.value.placement && !placed.value.metadata.deleting) {
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

/**
 * Starts the containers controller. Node and network changes re-queue every unplaced container
 * (capacity or its network may have appeared) and free the addresses of containers and networks
 * that are gone (also at start, the first pass).
 */
export function startContainersController(store: Store, onError?: (name: string, e: unknown) => void): Loop {
  const listNames = async (): Promise<string[]> => {
    const [cs, as] = await Promise.all([store.list<Container>(keys.containers), store.list(keys.allAssignments)]);
    return [...new Set([...cs.items.map((kv) => kv.value.metadata.name), ...as.items.map((kv) => keyName(kv.key))])];
  };
  const main = startLoop({ store, prefixes: [keys.containers, keys.statuses], listNames, reconcile: (n) => reconcileContainer(store, n), onError });
  const nodes = startLoop({
    // Networks too: a container waits for its network, and a removed one's host addresses are freed.
    store, prefixes: [keys.alive, keys.nodes, keys.networks, keys.health], listNames: async () => ['*'], onError,
    reconcile: async () => {
      await sweepLeases(store);
      const { items } = await store.list<Container>(keys.containers);
      // Unplaced containers may now fit; removals on a node that went away can now finish.
      for (const kv of items) if (!kv.value.placement || kv.value.metadata.deleting) await reconcileContainer(store, kv.value.metadata.name);
    },
  });
  return { stop: async () => { await Promise.all([main.stop(), nodes.stop()]); }, idle: async () => { await main.idle(); await nodes.idle(); } };
}
