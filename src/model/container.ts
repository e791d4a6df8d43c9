/**
 * The Container object: what a user asked for (spec), where it was placed (placement), and what the
 * agent observed (status, stored under its own key so agents never write user intent).
 */
import { Type, type Static } from 'typebox';

/** A published port. */
export const PortSchema = Type.Object({
  hostIp: Type.String({ default: '0.0.0.0' }),
  hostPort: Type.Integer({ minimum: 1, maximum: 65535 }),
  containerPort: Type.Integer({ minimum: 1, maximum: 65535 }),
  protocol: Type.Literal('tcp'),
});
/** A published port. */
export type Port = Static<typeof PortSchema>;

/**
 * A volume: `bind` mounts a host directory (`source` is its absolute path); `local` is a named volume
 * in the agent's data directory; `shared` a named volume under the cluster's shared volume root (a
 * directory every host mounts: NFS, CephFS…), which follows the container when it fails over, guarded
 * by a fence token (only the newest placement epoch may open it). Absent `kind`: bind.
 */
export const VolumeSchema = Type.Object({
  source: Type.String({ minLength: 1 }),
  target: Type.String({ minLength: 1 }),
  readOnly: Type.Boolean(),
  kind: Type.Optional(Type.Union([Type.Literal('bind'), Type.Literal('local'), Type.Literal('shared')])),
});
/** A volume (bind mount, local named volume or shared named volume). */
export type Volume = Static<typeof VolumeSchema>;

/** Limits; absent means unlimited. */
export const ResourcesSchema = Type.Object({
  memoryBytes: Type.Optional(Type.Integer({ minimum: 6 * 1024 * 1024 })),
  cpus: Type.Optional(Type.Number({ minimum: 0.01, maximum: 1024 })),
  pidsLimit: Type.Optional(Type.Integer({ minimum: 1 })),
});
/** Limits; absent means unlimited. */
export type ContainerResources = Static<typeof ResourcesSchema>;

/** When the agent restarts an exited container. */
export const RestartSchema = Type.Object({
  policy: Type.Union([Type.Literal('no'), Type.Literal('on-failure'), Type.Literal('always')]),
  /** For on-failure: give up after this many restarts; 0 = no limit. */
  maxRetries: Type.Integer({ minimum: 0 }),
});
/** When the agent restarts an exited container. */
export type RestartPolicy = Static<typeof RestartSchema>;

/** Where the scheduler may put containers, and how it prefers. */
export const SchedulingSchema = Type.Object({
  /** spread: the emptiest node; binpack: the fullest that fits. */
  strategy: Type.Optional(Type.Union([Type.Literal('spread'), Type.Literal('binpack')])),
  /** Node label constraints such as `region==eu`, `disk!=hdd`, `gpu`. */
  constraints: Type.Optional(Type.Array(Type.String())),
  /** At most one replica of the service per node. */
  onePerHost: Type.Optional(Type.Boolean()),
  /** What the workload mostly uses (cpu, io, memory, network): unlike classes mix better on a node. */
  workloadClass: Type.Optional(Type.String()),
}, { additionalProperties: false });
/** Where the scheduler may put containers, and how it prefers. */
export type Scheduling = Static<typeof SchedulingSchema>;

/** What the user wants. */
export const ContainerSpecSchema = Type.Object({
  image: Type.String({ minLength: 1 }),
  /** Replaces the image's entrypoint when set. */
  entrypoint: Type.Optional(Type.Array(Type.String())),
  /** Replaces the image's cmd when set. */
  command: Type.Optional(Type.Array(Type.String())),
  env: Type.Array(Type.String()),
  workdir: Type.Optional(Type.String()),
  user: Type.Optional(Type.String()),
  ports: Type.Array(PortSchema),
  volumes: Type.Array(VolumeSchema),
  resources: ResourcesSchema,
  restart: RestartSchema,
  /** Desired run state. */
  state: Type.Union([Type.Literal('running'), Type.Literal('stopped')]),
  /** Pin to a node by name. */
  node: Type.Optional(Type.String()),
  labels: Type.Record(Type.String(), Type.String()),
  /** The named network the container is on (absent: the cluster network, `default`); fixed at create. */
  network: Type.Optional(Type.String()),
  /** How the scheduler places it (replicas of a service carry their service's). */
  scheduling: Type.Optional(SchedulingSchema),
});
/** What the user wants. */
export type ContainerSpec = Static<typeof ContainerSpecSchema>;

/** Identity and bookkeeping. */
export const MetadataSchema = Type.Object({
  name: Type.String(),
  uid: Type.String(),
  createdAt: Type.String(),
  /** Bumped on every spec change; the agent reports which generation it applied. */
  generation: Type.Integer(),
  /** Set by `rm`: the controllers tear the container down, then delete the object. */
  deleting: Type.Optional(Type.Boolean()),
  /** With `deleting`: kill at once instead of a graceful stop. */
  force: Type.Optional(Type.Boolean()),
});

/** Where the scheduler put the container. */
export const PlacementSchema = Type.Object({
  node: Type.String(),
  /** Increases on every new placement; an agent acts only on the epoch it was given (fencing). */
  epoch: Type.Integer(),
  scheduledAt: Type.String(),
  reason: Type.String(),
});
/** Where the scheduler put the container. */
export type Placement = Static<typeof PlacementSchema>;

/** A container as stored at `/ferry/containers/<name>`. */
export const ContainerSchema = Type.Object({
  apiVersion: Type.Literal('ferry/v1'),
  kind: Type.Literal('Container'),
  metadata: MetadataSchema,
  spec: ContainerSpecSchema,
  placement: Type.Optional(PlacementSchema),
  /** The container's address in its network, leased at placement; it stays through migrations. */
  network: Type.Optional(Type.Object({ ip: Type.String() })),
  /**
   * Set when its node went Down and the manager moved it: the next placement gets `epoch` + 1, so the
   * fenced copy's epoch is stale everywhere (assignments, statuses, volume fence tokens).
   */
  failover: Type.Optional(Type.Object({ from: Type.String(), epoch: Type.Integer(), at: Type.String() })),
});
/** A container as stored at `/ferry/containers/<name>`. */
export type Container = Static<typeof ContainerSchema>;

/** Observed phase of a container. */
export const PhaseSchema = Type.Union([
  Type.Literal('pending'), Type.Literal('creating'), Type.Literal('running'), Type.Literal('stopped'),
  Type.Literal('exited'), Type.Literal('restarting'), Type.Literal('failed'), Type.Literal('removing'),
]);
/** Observed phase of a container. */
export type Phase = Static<typeof PhaseSchema>;

/** What the agent saw, stored at `/ferry/status/<name>`. */
export const ContainerStatusSchema = Type.Object({
  name: Type.String(),
  uid: Type.String(),
  node: Type.String(),
  epoch: Type.Integer(),
  runtimeId: Type.String(),
  phase: PhaseSchema,
  observedGeneration: Type.Integer(),
  pid: Type.Integer(),
  ip: Type.Optional(Type.String()),
  exitCode: Type.Optional(Type.Integer()),
  oomKilled: Type.Optional(Type.Boolean()),
  startedAt: Type.Optional(Type.String()),
  finishedAt: Type.Optional(Type.String()),
  restartCount: Type.Integer(),
  /** Human reason for the phase (an error, a backoff, …). */
  message: Type.Optional(Type.String()),
  /** Limits currently applied to the cgroup. */
  appliedResources: Type.Optional(ResourcesSchema),
  rootfsMode: Type.Optional(Type.String()),
  /** Whether CRIU could checkpoint it now, and if not why (refreshed while it runs). */
  migratable: Type.Optional(Type.Object({ ok: Type.Boolean(), reasons: Type.Array(Type.String()), checkedAt: Type.String() })),
  updatedAt: Type.String(),
});
/** What the agent saw, stored at `/ferry/status/<name>`. */
export type ContainerStatus = Static<typeof ContainerStatusSchema>;

/** The network interface an agent gives a container; `mac` is derived from `ip` (macFromIp). */
export const AssignmentNetworkSchema = Type.Object({
  ip: Type.String(),
  prefixLength: Type.Integer(),
  gateway: Type.String(),
  mac: Type.String(),
  /** The network's name (`default` for the cluster network). */
  name: Type.String(),
  /** The network's VXLAN id: one bridge and one VXLAN device per network on each host. */
  vni: Type.Integer(),
  /** The network's canonical CIDR. */
  subnet: Type.String(),
  /** The node's own address in this network (the bridge's), leased as `node/<node>` or `node/<node>@<network>`. */
  hostIp: Type.String(),
});
/** The network interface an agent gives a container. */
export type AssignmentNetwork = Static<typeof AssignmentNetworkSchema>;

/** The desired state a node's agent reconciles, at `/ferry/assignments/<node>/<name>`. */
export const AssignmentSchema = Type.Object({
  name: Type.String(),
  uid: Type.String(),
  generation: Type.Integer(),
  epoch: Type.Integer(),
  spec: ContainerSpecSchema,
  /** Set when the container is being removed: stop it (gracefully or at once), delete it, clear its status. */
  remove: Type.Optional(Type.Union([Type.Literal('graceful'), Type.Literal('force')])),
  /** The container's network interface; absent when the node's local network hands out addresses. */
  network: Type.Optional(AssignmentNetworkSchema),
});
/** The desired state a node's agent reconciles. */
export type Assignment = Static<typeof AssignmentSchema>;

/** Defaults for a spec built from partial input. */
export function defaultSpec(image: string): ContainerSpec {
  return {
    image, env: [], ports: [], volumes: [], resources: {},
    restart: { policy: 'no', maxRetries: 0 }, state: 'running', labels: {},
  };
}

/** A container with what its agent last reported (the API's answer for one container). */
export interface ContainerView {
  container: Container;
  status?: ContainerStatus;
}
