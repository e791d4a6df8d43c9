/**
 * The Service object: a named set of identical replicas (containers the services controller keeps at
 * the wanted count and rolls to a new template), reached through the entry point by HTTP host name
 * and path prefix or by a TCP port, and inside the cluster by name.
 */
import { createHash } from 'node:crypto';
import { Type, type Static } from 'typebox';
import { TCP_PORT_RANGE } from './port.ts';
import { ResourcesSchema, SchedulingSchema, type Container, type ContainerSpec } from './container.ts';


/** Labels the services controller puts on each replica. */
export const SERVICE_LABELS = {
  service: 'ferry.io/service',
  serviceUid: 'ferry.io/service-uid',
  /** Hash of the replica template the container was made from (rolling updates compare it). */
  revision: 'ferry.io/revision',
} as const;

/** How the entry point checks a replica. */
export const HealthSchema = Type.Union([
  Type.Object({ kind: Type.Literal('http'), path: Type.String({ pattern: '^/' }) }, { additionalProperties: false }),
  Type.Object({ kind: Type.Literal('tcp') }, { additionalProperties: false }),
]);
/** How the entry point checks a replica. */
export type Health = Static<typeof HealthSchema>;


/** What the user wants of a service. */
export const ServiceSpecSchema = Type.Object({
  image: Type.String({ minLength: 1 }),
  entrypoint: Type.Optional(Type.Array(Type.String())),
  command: Type.Optional(Type.Array(Type.String())),
  env: Type.Array(Type.String()),
  resources: ResourcesSchema,
  replicas: Type.Integer({ minimum: 0, maximum: 1000 }),
  /** The port the replicas listen on. */
  port: Type.Integer({ minimum: 1, maximum: 65535 }),
  /** HTTP routing at the entry point: requests for these host names (and path prefix) reach the service. */
  http: Type.Optional(Type.Object({
    hosts: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
    pathPrefix: Type.String({ pattern: '^/' }),
  }, { additionalProperties: false })),
  /** TCP routing at the entry point: connections to this port reach the service. */
  tcpPort: Type.Optional(Type.Integer({ minimum: TCP_PORT_RANGE.first, maximum: TCP_PORT_RANGE.last })),
  health: Type.Optional(HealthSchema),
  balance: Type.Union([Type.Literal('roundrobin'), Type.Literal('leastconn')]),
  /** Sticky sessions (a cookie names the replica; HTTP only). */
  sticky: Type.Boolean(),
  /** Rolling updates: how many replicas may be missing, and how many extra may run, meanwhile. */
  update: Type.Object({ maxUnavailable: Type.Integer({ minimum: 0 }), maxSurge: Type.Integer({ minimum: 0 }) }, { additionalProperties: false }),
  /** A replica that leaves gets no new requests and this long to finish the ones it has. */
  drainMs: Type.Integer({ minimum: 0, maximum: 600_000 }),
  scheduling: SchedulingSchema,
  /** The named network the replicas are on (absent: the cluster network). */
  network: Type.Optional(Type.String()),
  labels: Type.Record(Type.String(), Type.String()),
}, { additionalProperties: false });
/** What the user wants of a service. */
export type ServiceSpec = Static<typeof ServiceSpecSchema>;

/** A service as stored at `/ferry/services/<name>`. */
export const ServiceSchema = Type.Object({
  apiVersion: Type.Literal('ferry/v1'),
  kind: Type.Literal('Service'),
  metadata: Type.Object({
    name: Type.String(), uid: Type.String(), createdAt: Type.String(),
    /** Bumped on every spec change. */
    generation: Type.Integer(),
    /** Set by `rm`: the controller removes the replicas (drained), then the object. */
    deleting: Type.Optional(Type.Boolean()),
  }),
  spec: ServiceSpecSchema,
});
/** A service as stored. */
export type Service = Static<typeof ServiceSchema>;

/** A replica leaving its service: the entry point drains it until `until`, then the controller removes it. */
export interface Retirement {
  readonly service: string;
  readonly container: string;
  readonly uid: string;
  readonly startedAt: string;
  /** Deadline of the drain (ISO time). */
  readonly until: string;
  /** Set by the entry point when the replica has no session left before the deadline. */
  readonly drained?: boolean;
}

/** One replica as `ferry service inspect` shows it. */
export interface ReplicaView {
  readonly name: string;
  readonly node?: string;
  readonly ip?: string;
  readonly phase: string;
  readonly revision: string;
  /** Why the scheduler put it there (its placement reason, with the scores). */
  readonly reason?: string;
  readonly retiring: boolean;
  readonly message?: string;
}

/** A service with its replicas. */
export interface ServiceView {
  readonly service: Service;
  readonly revision: string;
  readonly ready: number;
  readonly replicas: ReplicaView[];
}

/** Defaults of a service spec: one replica on port 80, round robin, rolling one at a time. */
export function defaultServiceSpec(image: string): ServiceSpec {
  return {
    image, env: [], resources: {}, replicas: 1, port: 80, balance: 'roundrobin', sticky: false,
    update: { maxUnavailable: 0, maxSurge: 1 }, drainMs: 5000, scheduling: {}, labels: {},
  };
}

/** The container spec every replica of `spec` runs (what a rolling update compares). */
export function replicaTemplate(spec: ServiceSpec): ContainerSpec {
  return {
    image: spec.image,
    ...(spec.entrypoint ? { entrypoint: spec.entrypoint } : {}),
    ...(spec.command ? { command: spec.command } : {}),
    env: spec.env, ports: [], volumes: [], resources: spec.resources,
    restart: { policy: 'always', maxRetries: 0 }, state: 'running', labels: { ...spec.labels },
    ...(spec.network ? { network: spec.network } : {}),
    scheduling: spec.scheduling,
  };
}

/** JSON with object keys sorted at every depth: equal values give equal text. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** Short hash naming a replica template; replicas made from an older spec carry another. */
export function templateRevision(spec: ServiceSpec): string {
  return createHash('sha256').update(canonical({ template: replicaTemplate(spec), port: spec.port })).digest('hex').slice(0, 10);
}

/** True when container `c` is a replica of service `s`. */
export function isReplicaOf(c: Container, s: Service): boolean {
  return c.metadata.name.startsWith(`${s.metadata.name}-`) && c.spec.labels[SERVICE_LABELS.serviceUid] === s.metadata.uid;
}

/** Host names are compared lower-case, without a trailing dot or port. */
export function normalizeHost(host: string): string {
  return host.trim().toLowerCase().replace(/\.$/, '').replace(/:\d+$/, '');
}

/** True when `host` is a valid DNS-style host name (letters, digits, hyphens, dots; a leading `*.` allowed). */
export function isValidHost(host: string): boolean {
  const h = host.startsWith('*.') ? host.slice(2) : host;
  return h.length > 0 && h.length <= 253 && h.split('.').every((l) => /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(l));
}
