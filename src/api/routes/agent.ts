/** /v1/agent: what agents call — join, register, heartbeat, report container status and images. */
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type, type Static } from 'typebox';
import { randomUUID } from 'node:crypto';
import type { ApiDeps } from '../server.ts';
import { put, remove } from '../../store/index.ts';
import type { ClusterNetwork, Container, ContainerStatus, Network, Node, NodeImages, NodeNetworkStatus, Retirement, Service } from '../../model/index.ts';
import type { Store } from '../../store/index.ts';
import { DEFAULT_DETECTION, SERVICE_LABELS, keys, checkName, ipToInt, parseCidr, subnetContains, subnetsOverlap, ContainerStatusSchema, ImageRecordSchema, NodeFactsSchema } from '../../model/index.ts';
import { allocateAddress, clusterNetwork, nodeOwner, noteHeartbeat } from '../../controllers/index.ts';
import { apiErrors } from '../errors.ts';
import { NameParams } from './schemas.ts';
import { joinLabels, joinNode } from '../join.ts';

/** What an agent says about its networking when it registers. */
const RegisterNetwork = Type.Object({
  /** The host address the other nodes reach this one at: the VXLAN tunnel endpoint. */
  underlayIp: Type.Optional(Type.String({ minLength: 1 })),
  /** The node's own container subnet, when the cluster has no cluster network. */
  subnet: Type.Optional(Type.String({ minLength: 1 })),
}, { additionalProperties: false });

const RegisterBody = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 63 }),
  address: Type.String({ minLength: 1 }),
  labels: Type.Record(Type.String(), Type.String()),
  capacity: Type.Object({ cpus: Type.Number(), memoryBytes: Type.Integer() }),
  facts: NodeFactsSchema,
  agentVersion: Type.String(),
  network: Type.Optional(RegisterNetwork),
});

const JoinBody = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 63 }),
  token: Type.String({ minLength: 1, maxLength: 512 }),
}, { additionalProperties: false });

/**
 * Checks what a registering node reports about its networking against the cluster network and the
 * other nodes, and returns what to store on the node (without its hostIp, leased after the checks).
 */
async function checkNodeNetwork(store: ApiDeps['store'], name: string, sent: Static<typeof RegisterNetwork> | undefined, net: ClusterNetwork | undefined): Promise<NodeNetworkStatus> {
  const out: NodeNetworkStatus = {};
  const underlayIp = sent?.underlayIp;
  if (underlayIp !== undefined && ipToInt(underlayIp) === undefined) {
    throw apiErrors.BAD_REQUEST({ reason: `network.underlayIp "${underlayIp}" is not an IPv4 address` });
  }
  if (net && underlayIp === undefined) throw apiErrors.NETWORK_UNDERLAY_MISSING({ name, subnet: net.subnet, vni: net.vni });
  if (net && underlayIp !== undefined && subnetContains(net.subnet, underlayIp)) throw apiErrors.NETWORK_UNDERLAY_INSIDE({ name, underlayIp, subnet: net.subnet });
  if (underlayIp !== undefined) out.underlayIp = underlayIp;
  if (sent?.subnet !== undefined) {
    let subnet: string;
    try {
      subnet = parseCidr(sent.subnet).cidr;
    } catch (e) {
      throw apiErrors.BAD_REQUEST({ reason: `network.subnet: ${(e as Error).message}` }, e);
    }
    if (net && subnetsOverlap(subnet, net.subnet)) throw apiErrors.NETWORK_SUBNET_OVERLAP({ name, subnet, other: `the cluster network ${net.subnet}` });
    for (const { value: n } of (await store.list<Node>(keys.nodes)).items) {
      const theirs = n.status.network?.subnet;
      // A node re-registering with its own subnet is not a clash.
      if (n.metadata.name !== name && theirs !== undefined && subnetsOverlap(subnet, theirs)) {
        throw apiErrors.NETWORK_SUBNET_OVERLAP({ name, subnet, other: `the subnet ${theirs} of node "${n.metadata.name}"` });
      }
    }
    out.subnet = subnet;
  }
  return out;
}

/**
 * What agents' DNS name tables are made of (GET /v1/agent/names): per store prefix, the little of each
 * object a name needs — names, networks, addresses, phases; never a spec's image, command or env.
 */
const NAME_SOURCES: Record<string, { prefix: string; project: (value: unknown) => unknown }> = {
  services: {
    prefix: keys.services,
    project: (v) => { const s = v as Service; return { name: s.metadata.name, uid: s.metadata.uid, network: s.spec.network, deleting: s.metadata.deleting }; },
  },
  containers: {
    prefix: keys.containers,
    project: (v) => {
      const c = v as Container;
      return {
        name: c.metadata.name, uid: c.metadata.uid, network: c.spec.network, ip: c.network?.ip, deleting: c.metadata.deleting,
        service: c.spec.labels[SERVICE_LABELS.service], serviceUid: c.spec.labels[SERVICE_LABELS.serviceUid],
      };
    },
  },
  statuses: {
    prefix: keys.statuses,
    project: (v) => { const s = v as ContainerStatus; return { name: s.name, uid: s.uid, node: s.node, phase: s.phase, ip: s.ip }; },
  },
  retirements: { prefix: keys.retirements, project: (v) => { const r = v as Retirement; return { container: r.container, uid: r.uid }; } },
  networks: { prefix: keys.networks, project: (v) => { const n = v as Network; return { name: n.metadata.name, subnet: n.spec.subnet }; } },
};

/** The name sources now, at the lowest of the lists' revisions (waiting after it misses nothing). */
async function readNameSources(store: Store): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  let revision = Number.MAX_SAFE_INTEGER;
  for (const [name, { prefix, project }] of Object.entries(NAME_SOURCES)) {
    const r = await store.list(prefix);
    revision = Math.min(revision, r.revision);
    out[name] = r.items.map((kv) => project(kv.value));
  }
  return { revision, ...out };
}

/**
 * Resolves when a name source changed after `after` in a way a name table sees (a status report that
 * only refreshes other fields does not count), after `waitMs`, or when `abort` fires; at once when the
 * history from `after` is gone (compacted, or a store younger than the revision).
 */
async function nameSourcesChanged(store: Store, after: number, waitMs: number, abort: AbortSignal): Promise<void> {
  if (after > (await store.revision())) return;
  const ac = new AbortController();
  const stop = (): void => ac.abort();
  const timer = setTimeout(stop, waitMs);
  abort.addEventListener('abort', stop);
  try {
    await Promise.race(Object.values(NAME_SOURCES).map(async ({ prefix, project }) => {
      for await (const ev of store.watch(prefix, { afterRevision: after, signal: ac.signal })) {
        if (ev.type === 'delete' || !ev.prevKv || JSON.stringify(project(ev.kv.value)) !== JSON.stringify(project(ev.prevKv.value))) return;
      }
    }));
  } catch {
    // Compacted history: the caller reads everything anew anyway.
  } finally {
    clearTimeout(timer);
    abort.removeEventListener('abort', stop);
    ac.abort();
  }
}

/** How long GET /v1/agent/names waits for a change by default, and at most. */
const NAMES_WAIT_MS = 25_000;
const NAMES_MAX_WAIT_MS = 60_000;

/** Agent-facing routes. */
export function agentRoutes(deps: ApiDeps): FastifyPluginAsync {
  return async (base) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    const { store } = deps;

    // No cluster token here: the join token in the body is the credential (see auth.ts).
    app.post('/agent/join', {
      schema: { summary: 'A new host trades a join token for its node\'s own credential (shown once)', body: JoinBody, security: [] },
    }, async (req) => joinNode(store, req.body.name, req.body.token));

    app.post('/agent/register', { schema: { summary: 'An agent announces its node', body: RegisterBody } }, async (req) => {
      const b = req.body;
      checkName(b.name);
      const net = await clusterNetwork(store);
      const network = await checkNodeNetwork(store, b.name, b.network, net);
      // The node's own address in the cluster network: the same lease on every re-register.
      if (net) network.hostIp = await allocateAddress(store, net, nodeOwner(b.name));
      const now = new Date().toISOString();
      const existing = await store.get<Node>(keys.node(b.name));
      const node: Node = {
        apiVersion: 'ferry/v1', kind: 'Node',
        metadata: existing?.value.metadata ?? { name: b.name, uid: randomUUID(), createdAt: now, labels: {} },
        spec: existing?.value.spec ?? { unschedulable: false },
        status: {
          address: b.address, capacity: b.capacity, facts: b.facts, agentVersion: b.agentVersion, startedAt: now, heartbeatAt: now,
          ...(Object.keys(network).length > 0 ? { network } : {}),
        },
      };
      // A joined node's token labels come last: the admin's word wins over the agent's --label.
      node.metadata.labels = { ...node.metadata.labels, ...b.labels, ...(await joinLabels(store, b.name)) };
      await put(store, keys.node(b.name), node);
      await deps.leases.beat(b.name);
      const state = await noteHeartbeat(store, b.name);
      return {
        node, leaseTtl: deps.nodeLeaseTtl, fenceGrace: deps.fenceGraceSeconds ?? DEFAULT_DETECTION.graceSeconds, state,
        ...(net && network.hostIp ? { network: { subnet: net.subnet, prefixLength: net.prefixLength, gateway: net.gateway, vni: net.vni, hostIp: network.hostIp } } : {}),
      };
    });

    // The token agents' own APIs take (from the manager and from each other): separate from the admin
    // token, so a joined host never holds that.
    app.get('/agent/token', { schema: { summary: "The token agents' APIs accept" } }, async () => ({ token: deps.agentToken }));

    app.post('/agent/:name/heartbeat', { schema: { summary: 'An agent is alive', params: NameParams } }, async (req) => {
      await deps.leases.beat(req.params.name);
      return { ok: true, state: await noteHeartbeat(store, req.params.name) };
    });

    app.put('/agent/status/:name', { schema: { summary: 'An agent reports a container status', params: NameParams, body: ContainerStatusSchema } }, async (req, reply) => {
      const st = req.body as ContainerStatus;
      const key = keys.status(req.params.name);
      const cur = await store.get<ContainerStatus>(key);
      // A report about an older placement (lower epoch) of the same container never overwrites a newer one.
      if (cur && cur.value.uid === st.uid && cur.value.epoch > st.epoch) return reply.status(204).send();
      await put(store, key, st);
      return reply.status(204).send();
    });

    app.delete('/agent/status/:name', {
      schema: { summary: 'An agent has removed a container', params: NameParams, querystring: Type.Object({ uid: Type.String(), node: Type.String() }) },
    }, async (req, reply) => {
      const key = keys.status(req.params.name);
      const cur = await store.get<ContainerStatus>(key);
      // Only the node that reported the status clears it: after a migration the old node's cleanup
      // must not erase what the new node reports.
      if (cur && cur.value.uid === req.query.uid && (cur.value.node === req.query.node || cur.value.node === '')) {
        // Nor while the container lives on: placed elsewhere now (it moved), the new node's report replaces
        // this one — a gap between them would show it as gone (and take it out of the entry point).
        const c = (await store.get<Container>(keys.container(req.params.name)))?.value;
        const movedOn = c !== undefined && c.metadata.uid === req.query.uid && !c.metadata.deleting && c.placement !== undefined && c.placement.node !== req.query.node;
        if (!movedOn) await remove(store, key);
      }
      return reply.status(204).send();
    });

    // Agents' DNS (src/agent/dns): a long poll — with afterRevision it answers once something that
    // names or addresses a container changed after it, or after waitMs.
    app.get('/agent/names', {
      schema: {
        summary: "What agents' DNS answers from: services, containers, statuses, retirements and networks, projected to names and addresses",
        querystring: Type.Object({
          afterRevision: Type.Optional(Type.Integer({ minimum: 0 })),
          waitMs: Type.Optional(Type.Integer({ minimum: 0, maximum: NAMES_MAX_WAIT_MS })),
        }),
      },
    }, async (req, reply) => {
      if (req.query.afterRevision !== undefined) {
        const gone = new AbortController();
        // The response's close before it was sent: the agent hung up.
        const onClose = (): void => gone.abort();
        reply.raw.on('close', onClose);
        try {
          await nameSourcesChanged(store, req.query.afterRevision, req.query.waitMs ?? NAMES_WAIT_MS, gone.signal);
        } finally {
          reply.raw.off('close', onClose);
        }
      }
      return readNameSources(store);
    });

    app.put('/agent/:name/images', { schema: { summary: 'An agent reports its images', params: NameParams, body: Type.Object({ images: Type.Array(ImageRecordSchema) }) } }, async (req, reply) => {
      const value: NodeImages = { node: req.params.name, images: req.body.images, updatedAt: new Date().toISOString() };
      await put(store, keys.nodeImages(req.params.name), value);
      return reply.status(204).send();
    });

  };
}
