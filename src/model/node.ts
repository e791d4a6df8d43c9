/** The Node object: a host running an agent, at `/ferry/nodes/<name>`. */
import { Type, type Static } from 'typebox';

/** What a node reports about itself (prechecks for migration read these later). */
export const NodeFactsSchema = Type.Object({
  hostname: Type.String(),
  kernel: Type.String(),
  arch: Type.String(),
  os: Type.String(),
  runc: Type.String(),
  criu: Type.String(),
  cgroupVersion: Type.Integer(),
  overlay: Type.Boolean(),
  cpuModel: Type.String(),
  cpuFlags: Type.Array(Type.String()),
  /** vm.unprivileged_userfaultfd is 1: post-copy can restore into a user namespace (absent from old agents). */
  userfaultfd: Type.Optional(Type.Boolean()),
});
/** What a node reports about itself. */
export type NodeFacts = Static<typeof NodeFactsSchema>;

/** How a node takes part in container networking. */
export const NodeNetworkStatusSchema = Type.Object({
  /** Host address the VXLAN tunnels of the cluster network run over. */
  underlayIp: Type.Optional(Type.String()),
  /** The node's own address in the cluster network (leased as `node/<name>`). */
  hostIp: Type.Optional(Type.String()),
  /** The node-local container subnet, when the cluster has no cluster network. */
  subnet: Type.Optional(Type.String()),
});
/** How a node takes part in container networking. */
export type NodeNetworkStatus = Static<typeof NodeNetworkStatusSchema>;

/** A node as stored. */
export const NodeSchema = Type.Object({
  apiVersion: Type.Literal('ferry/v1'),
  kind: Type.Literal('Node'),
  metadata: Type.Object({ name: Type.String(), uid: Type.String(), createdAt: Type.String(), labels: Type.Record(Type.String(), Type.String()) }),
  spec: Type.Object({ unschedulable: Type.Boolean() }),
  status: Type.Object({
    /** Base URL of the agent's API. */
    address: Type.String(),
    capacity: Type.Object({ cpus: Type.Number(), memoryBytes: Type.Integer() }),
    facts: NodeFactsSchema,
    agentVersion: Type.String(),
    startedAt: Type.String(),
    heartbeatAt: Type.String(),
    /** The node's networking as its agent registered it (absent on nodes stored by older managers). */
    network: Type.Optional(NodeNetworkStatusSchema),
  }),
});
/** A node as stored. */
export type Node = Static<typeof NodeSchema>;

/** Node readiness derived from heartbeats. */
export type NodeState = 'Ready' | 'NotReady';
