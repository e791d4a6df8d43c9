/**
 * /v1/networks: named container networks (each its own subnet and VXLAN id, so containers on
 * different networks cannot reach each other), listed after the implicit `default` one, the cluster
 * network. All of them need the cluster network.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Store } from '../../store/index.ts';
import { isFerryError } from '../../errors/index.ts';
import type { ApiDeps } from '../server.ts';
import type { ClusterNetwork, Container, Network, NetworkSpace, NetworkView, Node } from '../../model/index.ts';
import { keys, checkName, addressingOf, defaultAddressing, planNetworkSpec, subnetsOverlap, DEFAULT_NETWORK } from '../../model/index.ts';
import { clusterNetwork, sweepLeases } from '../../controllers/index.ts';
import { apiErrors } from '../errors.ts';
import { NameParams } from './schemas.ts';

/** Body of POST /v1/networks. */
const CreateNetworkBody = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 63 }),
  /** Absent: the next free /24 of 10.217.0.0/16. */
  subnet: Type.Optional(Type.String()),
  /** Absent: the cluster vni + 1, + 2, … first free. */
  vni: Type.Optional(Type.Integer()),
  labels: Type.Optional(Type.Record(Type.String(), Type.String())),
}, { additionalProperties: false });

/** Input of createNetwork. */
export interface CreateNetworkInput {
  name: string;
  subnet?: string;
  vni?: number;
  labels?: Record<string, string>;
}

/** A create that lost a race for its subnet or vni plans again this many times before giving up. */
const CREATE_ATTEMPTS = 10;

/** The cluster network, or NETWORKS_NEED_CLUSTER: every named network rides on it. */
async function requireCluster(store: Store): Promise<ClusterNetwork> {
  const cluster = await clusterNetwork(store);
  if (!cluster) throw apiErrors.NETWORKS_NEED_CLUSTER();
  return cluster;
}

/** Throws unless containers may be put on network `name` (`default` included). */
export async function requireNetwork(store: Store, name: string): Promise<void> {
  await requireCluster(store);
  if (name === DEFAULT_NETWORK) return;
  checkName(name);
  if (!(await store.get(keys.network(name)))) throw apiErrors.NETWORK_NOT_FOUND({ name });
}

/** What a new network may not collide with: the cluster network, the other networks, the nodes. */
async function spaceOf(store: Store, cluster: ClusterNetwork): Promise<NetworkSpace> {
  const [nets, nodes] = await Promise.all([store.list<Network>(keys.networks), store.list<Node>(keys.nodes)]);
  const space: NetworkSpace = {
    cluster, networks: nets.items.map(({ value: n }) => ({ name: n.metadata.name, subnet: n.spec.subnet, vni: n.spec.vni })), nodeSubnets: [], underlayIps: [],
  };
  for (const { value: n } of nodes.items) {
    const node = n.metadata.name;
    if (n.status.network?.subnet) space.nodeSubnets.push({ node, subnet: n.status.network.subnet });
    if (n.status.network?.underlayIp) space.underlayIps.push({ node, ip: n.status.network.underlayIp });
  }
  return space;
}

/** Names of the containers on each network, by network name. */
async function containersByNetwork(store: Store): Promise<Map<string, string[]>> {
  const by = new Map<string, string[]>();
  for (const { value: c } of (await store.list<Container>(keys.containers)).items) {
    const net = c.spec.network ?? DEFAULT_NETWORK;
    by.set(net, [...(by.get(net) ?? []), c.metadata.name]);
  }
  return by;
}

function viewOf(n: Network, containers: string[]): NetworkView {
  return { ...addressingOf(n), default: false, labels: n.metadata.labels, createdAt: n.metadata.createdAt, containers };
}

function defaultView(cluster: ClusterNetwork, containers: string[]): NetworkView {
  return { ...defaultAddressing(cluster), default: true, labels: {}, containers };
}

/**
 * Stores a new network with the subnet and vni asked for (checked) or the first free ones. Two
 * creates racing for one subnet or vni both write; the later one sees the earlier, removes itself
 * and plans again (auto fields move on; given ones are refused).
 */
export async function createNetwork(store: Store, input: CreateNetworkInput): Promise<NetworkView> {
  const name = checkName(input.name);
  if (name === DEFAULT_NETWORK) throw apiErrors.NETWORK_DEFAULT({ what: 'created again (pick another name)' });
  const cluster = await requireCluster(store);
  for (let attempt = 1; ; attempt++) {
    const spec = planNetworkSpec({ subnet: input.subnet, vni: input.vni }, await spaceOf(store, cluster));
    const n: Network = {
      apiVersion: 'ferry/v1', kind: 'Network',
      metadata: { name, uid: randomUUID(), createdAt: new Date().toISOString(), labels: input.labels ?? {} }, spec,
    };
    let mine;
    try {
      mine = await store.create<Network>(keys.network(name), n);
    } catch (e) {
      if (isFerryError(e, 'STORE_EXISTS')) throw apiErrors.NETWORK_EXISTS({ name });
      throw e;
    }
    const earlier = (await store.list<Network>(keys.networks)).items.filter((kv) => kv.key !== mine.key && kv.createRevision < mine.createRevision);
    if (!earlier.some((kv) => kv.value.spec.vni === spec.vni || subnetsOverlap(kv.value.spec.subnet, spec.subnet))) return viewOf(n, []);
    await store.delete(mine.key, mine.modRevision).catch((e: unknown) => { if (!isFerryError(e, 'STORE_NOT_FOUND')) throw e; });
    if (attempt >= CREATE_ATTEMPTS) throw apiErrors.NETWORK_CREATE_BUSY({ name });
  }
}

/** The default network first, then the named ones by name, each with its containers. */
export async function listNetworks(store: Store): Promise<NetworkView[]> {
  const cluster = await clusterNetwork(store);
  if (!cluster) throw apiErrors.NETWORK_NOT_CONFIGURED();
  const [nets, by] = await Promise.all([store.list<Network>(keys.networks), containersByNetwork(store)]);
  const named = nets.items.map(({ value: n }) => viewOf(n, by.get(n.metadata.name) ?? [])).sort((a, b) => a.name.localeCompare(b.name));
  return [defaultView(cluster, by.get(DEFAULT_NETWORK) ?? []), ...named];
}

/** One network (`default` included), or NETWORK_NOT_FOUND. */
export async function getNetwork(store: Store, name: string): Promise<NetworkView> {
  const cluster = await clusterNetwork(store);
  if (!cluster) throw apiErrors.NETWORK_NOT_CONFIGURED();
  const containers = (await containersByNetwork(store)).get(name) ?? [];
  if (name === DEFAULT_NETWORK) return defaultView(cluster, containers);
  const n = (await store.get<Network>(keys.network(name)))?.value;
  if (!n) throw apiErrors.NETWORK_NOT_FOUND({ name });
  return viewOf(n, containers);
}

/** Removes a network no container is on, then frees the hosts' addresses in it. */
export async function deleteNetwork(store: Store, name: string): Promise<void> {
  if (name === DEFAULT_NETWORK) throw apiErrors.NETWORK_DEFAULT({ what: 'removed' });
  const kv = await store.get<Network>(keys.network(name));
  if (!kv) throw apiErrors.NETWORK_NOT_FOUND({ name });
  const users = (await containersByNetwork(store)).get(name) ?? [];
  if (users.length > 0) throw apiErrors.NETWORK_IN_USE({ name, count: users.length, containers: users.join(', '), args: users.join(' ') });
  try {
    await store.delete(kv.key, kv.modRevision);
  } catch (e) {
    if (isFerryError(e, 'STORE_NOT_FOUND') || isFerryError(e, 'STORE_CONFLICT')) throw apiErrors.NETWORK_NOT_FOUND({ name });
    throw e;
  }
  // The hosts' `node/<node>@<name>` leases (the controller's sweep would free them too, later).
  await sweepLeases(store);
}

/** Named-network routes. */
export function networksRoutes(deps: ApiDeps): FastifyPluginAsync {
  return async (base) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    const { store } = deps;

    app.post('/networks', { schema: { summary: 'Create a named network (subnet and vni chosen when not given)', body: CreateNetworkBody } }, async (req, reply) =>
      reply.status(201).send(await createNetwork(store, req.body)));

    app.get('/networks', { schema: { summary: 'List networks: default (the cluster network) first, each with its containers' } }, async () => listNetworks(store));

    app.get('/networks/:name', { schema: { summary: 'Inspect a network', params: NameParams } }, async (req) => getNetwork(store, req.params.name));

    app.delete('/networks/:name', { schema: { summary: 'Remove a network no container is on', params: NameParams } }, async (req, reply) => {
      await deleteNetwork(store, req.params.name);
      return reply.status(204).send();
    });
  };
}
