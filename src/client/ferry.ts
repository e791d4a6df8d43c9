/** The typed client of the manager API — the one door the CLI, agents, benches and dashboard use. */
import type { ClusterNetwork, NetworkView, ContainerSpec, ContainerStatus, ContainerView, ImageView, JoinTokenCreated, JoinTokenView, Migration, Node, NodeFacts, ImageRecord, ServiceSpec, ServiceView, NodeHealthState, ClusterEvent } from '../model/index.ts';
import type { Endpoint, ExecFrame } from './http.ts';
import { ndjson, requestJson, send } from './http.ts';

/** A node with its derived readiness. */
export interface NodeView {
  node: Node;
  /** Ready / Suspect / Down (see src/model/health.ts); NotReady for a node without health yet whose lease lapsed. */
  state: 'Ready' | 'NotReady' | NodeHealthState;
  /** Why the node is in that state, when it is not Ready. */
  reason?: string;
  containers: number;
}

/** Input of `containers.create`. */
export type CreateContainerInput = Partial<ContainerSpec> & { image: string; name?: string };

/** Changes `ferry update` may make to a live container. */
export interface ContainerPatch {
  resources?: { memoryBytes?: number; cpus?: number; pidsLimit?: number };
  restart?: ContainerSpec['restart'];
}

/** Wait options: block until the agent has applied the change (or `timeoutMs` passes). */
export interface WaitOptions {
  wait?: boolean;
  timeoutMs?: number;
}

/** A log line as the API streams it. */
export interface LogLine {
  time: string;
  stream: 'stdout' | 'stderr';
  line: string;
}

/** One change from the store, as the watch endpoint streams it. */
export interface WatchFrame {
  type: 'put' | 'delete';
  revision: number;
  key: string;
  value?: unknown;
}

/** Registration an agent sends when it starts. */
export interface NodeRegistration {
  name: string;
  address: string;
  labels: Record<string, string>;
  capacity: { cpus: number; memoryBytes: number };
  facts: NodeFacts;
  agentVersion: string;
  /** Required (underlayIp) when the manager runs a cluster network. */
  network?: {
    /** The host address the other nodes reach this one at: the VXLAN tunnel endpoint. */
    underlayIp?: string;
    /** The node's own container subnet, when the cluster has no cluster network; must not overlap another node's. */
    subnet?: string;
  };
}

/** The manager's answer to a registration. */
export interface NodeRegistered {
  node: Node;
  leaseTtl: number;
  /** The node's health as the manager sees it (absent from older managers: Ready). */
  state?: NodeHealthState;
  /** Seconds the manager keeps a node Suspect before Down (agents size their fence by it). */
  fenceGrace?: number;
  /** Present when the manager runs a cluster network; `hostIp` is this node's own address in it (stable across re-registers). */
  network?: ClusterNetwork & { hostIp: string };
}

/**
 * What agents' DNS answers from (GET /v1/agent/names): the store projected to names, networks and
 * addresses, read at `revision` (pass it as `afterRevision` to wait for the next change).
 */
export interface AgentNames {
  revision: number;
  services: { name: string; uid: string; network?: string; deleting?: boolean }[];
  containers: { name: string; uid: string; network?: string; ip?: string; deleting?: boolean; service?: string; serviceUid?: string }[];
  statuses: { name: string; uid: string; node: string; phase: string; ip?: string }[];
  retirements: { container: string; uid: string }[];
  /** Named networks (not `default`). */
  networks: { name: string; subnet: string }[];
}

/** The manager's answer to a join: the node's own credential, to send as its bearer token from now on. */
export interface NodeJoined {
  node: string;
  credential: string;
}

function waitQuery(o?: WaitOptions): Record<string, string | number | undefined> {
  return { wait: o?.wait ? 'true' : undefined, timeoutMs: o?.timeoutMs };
}

/** Client of the manager API. */
export class FerryClient {
  /** Where the manager is. */
  readonly endpoint: Endpoint;

  constructor(endpoint: Endpoint) {
    this.endpoint = endpoint;
  }

  /** Container operations. */
  readonly containers = {
    list: (): Promise<ContainerView[]> => requestJson(this.endpoint, 'GET', 'v1/containers'),
    get: (name: string): Promise<ContainerView> => requestJson(this.endpoint, 'GET', `v1/containers/${enc(name)}`),
    create: (input: CreateContainerInput, o?: WaitOptions): Promise<ContainerView> =>
      requestJson(this.endpoint, 'POST', 'v1/containers', { body: input, query: waitQuery(o) }),
    update: (name: string, patch: ContainerPatch, o?: WaitOptions): Promise<ContainerView> =>
      requestJson(this.endpoint, 'PATCH', `v1/containers/${enc(name)}`, { body: patch, query: waitQuery(o) }),
    start: (name: string, o?: WaitOptions): Promise<ContainerView> =>
      requestJson(this.endpoint, 'POST', `v1/containers/${enc(name)}/start`, { query: waitQuery(o) }),
    stop: (name: string, o?: WaitOptions): Promise<ContainerView> =>
      requestJson(this.endpoint, 'POST', `v1/containers/${enc(name)}/stop`, { query: waitQuery(o) }),
    restart: (name: string, o?: WaitOptions): Promise<ContainerView> =>
      requestJson(this.endpoint, 'POST', `v1/containers/${enc(name)}/restart`, { query: waitQuery(o) }),
    remove: (name: string, o?: WaitOptions & { force?: boolean }): Promise<void> =>
      requestJson(this.endpoint, 'DELETE', `v1/containers/${enc(name)}`, { query: { ...waitQuery(o), force: o?.force ? 'true' : undefined } }),
    logs: async (name: string, o: { follow?: boolean; tail?: number; signal?: AbortSignal } = {}): Promise<AsyncGenerator<LogLine>> =>
      ndjson<LogLine>(await send(this.endpoint, 'GET', `v1/containers/${enc(name)}/logs`, {
        query: { follow: o.follow ? 'true' : undefined, tail: o.tail }, signal: o.signal,
      })),
    exec: async (name: string, o: { args: string[]; env?: string[]; cwd?: string; stdin?: string; signal?: AbortSignal }): Promise<AsyncGenerator<ExecFrame>> =>
      ndjson<ExecFrame>(await send(this.endpoint, 'POST', `v1/containers/${enc(name)}/exec`, {
        body: { args: o.args, env: o.env, cwd: o.cwd, stdin: o.stdin }, signal: o.signal,
      })),
    stats: (name: string): Promise<Record<string, unknown>> => requestJson(this.endpoint, 'GET', `v1/containers/${enc(name)}/stats`),
  };

  /** Service operations. */
  readonly services = {
    list: (): Promise<ServiceView[]> => requestJson(this.endpoint, 'GET', 'v1/services'),
    get: (name: string): Promise<ServiceView> => requestJson(this.endpoint, 'GET', `v1/services/${enc(name)}`),
    create: (input: Partial<ServiceSpec> & { name: string; image: string }): Promise<ServiceView> => requestJson(this.endpoint, 'POST', 'v1/services', { body: input }),
    update: (name: string, change: Partial<ServiceSpec>): Promise<ServiceView> => requestJson(this.endpoint, 'PATCH', `v1/services/${enc(name)}`, { body: change }),
    remove: (name: string): Promise<ServiceView> => requestJson(this.endpoint, 'DELETE', `v1/services/${enc(name)}`),
  };

  /** What an entry point (lb) reports to the manager. */
  readonly entryPoints = {
    /** Renews the entry point's lease; `http` (its HTTP address as the manager reaches it) lets the manager open services through it. */
    heartbeat: (name: string, o: { http?: string } = {}): Promise<{ ttlSeconds: number }> =>
      requestJson(this.endpoint, 'POST', `v1/entrypoints/${enc(name)}/heartbeat`, { query: { http: o.http } }),
    remove: (name: string): Promise<void> => requestJson(this.endpoint, 'DELETE', `v1/entrypoints/${enc(name)}`),
    ackHold: (container: string, entryPoint: string, uid: string): Promise<{ applied: boolean }> =>
      requestJson(this.endpoint, 'POST', `v1/holds/${enc(container)}/ack`, { body: { entryPoint, uid } }),
    drained: (container: string, uid: string): Promise<{ applied: boolean }> =>
      requestJson(this.endpoint, 'POST', `v1/retirements/${enc(container)}/drained`, { body: { uid } }),
  };

  /** Node operations. */
  readonly nodes = {
    list: (): Promise<NodeView[]> => requestJson(this.endpoint, 'GET', 'v1/nodes'),
    /** Cluster events (node health, failovers), oldest first. */
    events: (limit?: number): Promise<ClusterEvent[]> => requestJson(this.endpoint, 'GET', 'v1/events', { query: { limit } }),
    get: (name: string): Promise<NodeView> => requestJson(this.endpoint, 'GET', `v1/nodes/${enc(name)}`),
    /** Marks the node unschedulable: nothing new is placed or migrated there. */
    cordon: (name: string): Promise<NodeView> => requestJson(this.endpoint, 'POST', `v1/nodes/${enc(name)}/cordon`),
    /** Makes the node schedulable again. */
    uncordon: (name: string): Promise<NodeView> => requestJson(this.endpoint, 'POST', `v1/nodes/${enc(name)}/uncordon`),
    /** Forgets a node that is gone (NotReady, nothing placed on it): record, addresses, credential. */
    remove: (name: string): Promise<void> => requestJson(this.endpoint, 'DELETE', `v1/nodes/${enc(name)}`),
  };

  /** Image operations. */
  readonly images = {
    list: (): Promise<ImageView[]> => requestJson(this.endpoint, 'GET', 'v1/images'),
    inspect: (ref: string): Promise<ImageView> => requestJson(this.endpoint, 'GET', `v1/images/${enc(ref)}`),
    remove: (ref: string, o: { force?: boolean } = {}): Promise<void> =>
      requestJson(this.endpoint, 'DELETE', `v1/images/${enc(ref)}`, { query: { force: o.force ? 'true' : undefined } }),
    /** Streams an archive (tar of an OCI layout, OCI/docker archive, or rootfs tar) to every node (or one). */
    import: (archive: AsyncIterable<Uint8Array> | Uint8Array, o: { name?: string; node?: string } = {}): Promise<ImageView> =>
      requestJson(this.endpoint, 'POST', 'v1/images/import', { rawBody: archive, query: { name: o.name, node: o.node } }),
  };

  /** Live migrations. */
  readonly migrations = {
    /** Without `to`, the scheduler picks a node other than the container's own. */
    create: (body: { container: string; to?: string; strategy?: 'auto' | 'stop-copy' | 'pre-copy' | 'post-copy'; check?: boolean; bandwidthBytesPerSec?: number }, o?: WaitOptions): Promise<Migration> =>
      requestJson(this.endpoint, 'POST', 'v1/migrations', { body, query: waitQuery(o) }),
    list: (): Promise<Migration[]> => requestJson(this.endpoint, 'GET', 'v1/migrations'),
    get: (id: string): Promise<Migration> => requestJson(this.endpoint, 'GET', `v1/migrations/${enc(id)}`),
    cancel: (id: string): Promise<Migration> => requestJson(this.endpoint, 'POST', `v1/migrations/${enc(id)}/cancel`),
  };

  /** Calls agents make. */
  readonly agent = {
    register: (reg: NodeRegistration): Promise<NodeRegistered> => requestJson(this.endpoint, 'POST', 'v1/agent/register', { body: reg }),
    /** The token agents' own APIs accept (from the manager and from each other). */
    apiToken: (): Promise<{ token: string }> => requestJson(this.endpoint, 'GET', 'v1/agent/token'),
    heartbeat: (name: string): Promise<{ ok: boolean; state?: NodeHealthState }> => requestJson(this.endpoint, 'POST', `v1/agent/${enc(name)}/heartbeat`),
    reportStatus: (status: ContainerStatus): Promise<void> => requestJson(this.endpoint, 'PUT', `v1/agent/status/${enc(status.name)}`, { body: status }),
    clearStatus: (name: string, uid: string, node: string): Promise<void> => requestJson(this.endpoint, 'DELETE', `v1/agent/status/${enc(name)}`, { query: { uid, node } }),
    reportImages: (node: string, images: ImageRecord[]): Promise<void> => requestJson(this.endpoint, 'PUT', `v1/agent/${enc(node)}/images`, { body: { images } }),
    /** The names agents' DNS answers; with `afterRevision` the manager answers once they changed after it (or after `waitMs`). */
    names: (o: { afterRevision?: number; waitMs?: number; signal?: AbortSignal } = {}): Promise<AgentNames> =>
      requestJson(this.endpoint, 'GET', 'v1/agent/names', { query: { afterRevision: o.afterRevision, waitMs: o.waitMs }, signal: o.signal }),
    /** Trades a join token for node `name`'s own credential (needs no cluster token; the credential is shown once). */
    join: (name: string, token: string): Promise<NodeJoined> => requestJson(this.endpoint, 'POST', 'v1/agent/join', { body: { name, token } }),
  };

  /** Join tokens new hosts join with (admin). */
  readonly joinTokens = {
    /** The token's text is in the answer only. */
    create: (o: { ttlSeconds?: number; uses?: number; labels?: Record<string, string> } = {}): Promise<JoinTokenCreated> =>
      requestJson(this.endpoint, 'POST', 'v1/join-tokens', { body: o }),
    list: (): Promise<JoinTokenView[]> => requestJson(this.endpoint, 'GET', 'v1/join-tokens'),
    remove: (id: string): Promise<void> => requestJson(this.endpoint, 'DELETE', `v1/join-tokens/${enc(id)}`),
  };

  /** The cluster-wide container network. */
  readonly network = {
    /** Fails with FERRY_ERR_NETWORK_NOT_CONFIGURED (404) when nodes keep their own local subnets. */
    get: (): Promise<ClusterNetwork> => requestJson(this.endpoint, 'GET', 'v1/network'),
  };

  /** Named networks (and `default`, the cluster network); all need a cluster network. */
  readonly networks = {
    /** Without `subnet`/`vni` the manager picks the first free ones. */
    create: (body: { name: string; subnet?: string; vni?: number; labels?: Record<string, string> }): Promise<NetworkView> =>
      requestJson(this.endpoint, 'POST', 'v1/networks', { body }),
    /** `default` first, then the named ones. */
    list: (): Promise<NetworkView[]> => requestJson(this.endpoint, 'GET', 'v1/networks'),
    get: (name: string): Promise<NetworkView> => requestJson(this.endpoint, 'GET', `v1/networks/${enc(name)}`),
    /** Fails with FERRY_ERR_NETWORK_IN_USE (409) while containers are on it. */
    remove: (name: string): Promise<void> => requestJson(this.endpoint, 'DELETE', `v1/networks/${enc(name)}`),
  };

  /** Streams store changes under a prefix (after `afterRevision`, or from now). */
  async watch(prefix: string, o: { afterRevision?: number; signal?: AbortSignal } = {}): Promise<AsyncGenerator<WatchFrame>> {
    return ndjson<WatchFrame>(await send(this.endpoint, 'GET', 'v1/watch', { query: { prefix, afterRevision: o.afterRevision }, signal: o.signal }));
  }

  /** Lists store keys under a prefix with the revision to watch from. */
  list<T>(prefix: string): Promise<{ revision: number; items: { key: string; value: T; modRevision: number }[] }> {
    return requestJson(this.endpoint, 'GET', 'v1/kv', { query: { prefix } });
  }

  /** Checks the manager is up. */
  health(): Promise<{ ok: boolean; version: string }> {
    return requestJson(this.endpoint, 'GET', 'healthz');
  }
}

function enc(s: string): string {
  return encodeURIComponent(s);
}
