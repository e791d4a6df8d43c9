/**
 * Container networking on one node (issue 2 scope): a bridge on the host, one veth per container
 * plumbed into the network namespace runc creates (by an OCI prestart hook, so it works with user
 * namespaces and again at CRIU restore), addresses from a node-local pool, and published ports.
 * The cluster-wide overlay (VXLAN, IPAM in the store) comes with the cluster-networking issue.
 */
import type { Hook } from '../runtime/types.ts';

/** One published port: host address/port forwarded to the container's port. */
export interface PortMapping {
  readonly hostIp: string;
  readonly hostPort: number;
  readonly containerPort: number;
  readonly protocol: 'tcp';
}

/** The network identity a container gets. */
export interface Attachment {
  readonly containerId: string;
  readonly ip: string;
  readonly prefixLength: number;
  readonly gateway: string;
  readonly mac: string;
  /** Host-side veth name. */
  readonly hostVeth: string;
  /** Bridge the host veth joins (set by createNodeNetwork; optional so hand-made fakes need not fill it). */
  readonly bridge?: string;
  /** The prestart hook runc must run to plumb the namespace it creates. */
  readonly hooks: { prestart: Hook[]; poststop: Hook[] };
}

/** How `attach` prepares the prestart hook. */
export interface AttachOptions {
  /**
   * `up` (default): the host veth joins the bridge at once — a normal start.
   * `down`: the host veth stays down and off the bridge — a migration restore, where the container must
   * stay unreachable until the restore returns; `bringUp(attachment)` then connects it.
   */
  readonly mode?: 'up' | 'down';
  /** The address the cluster IPAM leased to the container (required on the cluster overlay). */
  readonly ip?: string;
  /** The named network the container is on (absent or `default`: the cluster's default network). */
  readonly network?: { readonly name: string; readonly vni: number; readonly subnet: string; readonly hostIp: string };
}

/** Node networking. */
export interface NodeNetwork {
  /** Creates the bridge etc. if missing; idempotent. */
  init(): Promise<void>;
  /** Reserves an address (persisted) and returns the hooks for the bundle; idempotent per containerId. */
  attach(containerId: string, options?: AttachOptions): Promise<Attachment>;
  /** Stops its published ports, removes the host veth (if left) and frees the address; idempotent. */
  detach(containerId: string): Promise<void>;
  /** Starts forwarding host ports to the container; FERRY_ERR_NET_PORT_IN_USE when a port is taken; replaces the container's earlier set. */
  publish(containerId: string, ip: string, ports: PortMapping[]): Promise<void>;
  /** Stops forwarding the container's ports; idempotent. With `drainMs`, open connections get that long to finish. */
  unpublish(containerId: string, drainMs?: number): Promise<void>;
  /** Attachments currently held (for adoption and cleanup). */
  list(): Promise<Attachment[]>;
  /** Removes everything this node network made (bridge, veths, forwards). */
  destroy(): Promise<void>;
  /** Set when this node is on the cluster overlay: addresses come from the manager and follow containers. */
  readonly cluster?: { readonly vni: number; readonly underlayIp: string; readonly hostIp: string } | undefined;
  /**
   * Stops delivering anything to the container while what it sends still leaves (the bridge no longer
   * forwards or floods to its port): the step before a migration source is frozen, so an answer the
   * app writes meanwhile reaches its client; `isolate` ends it (a port that leaves the bridge loses
   * these settings); idempotent.
   */
  refuseInbound(containerId: string): Promise<void>;
  /**
   * Takes the container's host veth off the bridge and down (a frozen migration source); idempotent.
   * False when the veth could not be taken down (then something may still reach the container).
   */
  isolate(containerId: string): Promise<boolean>;
  /** Connects a container's host veth and, on the overlay, announces its address from inside process `pid`'s namespace. */
  announce(attachment: Attachment, pid: number): Promise<void>;
  /** Connects a container's host veth (joins its bridge, up) without announcing anything; idempotent. */
  bringUp(attachment: Attachment): Promise<void>;
  /** On the overlay: the other hosts' underlay addresses (the VXLAN flood list); a no-op otherwise. */
  setPeers(peers: readonly string[]): Promise<void>;
}
