/** Where each kind of object lives in the store. One place, so prefixes never drift apart. */

const ROOT = '/ferry';

/** Key builders and prefixes for every object kind. */
export const keys = {
  containers: `${ROOT}/containers/`,
  container: (name: string): string => `${ROOT}/containers/${name}`,
  statuses: `${ROOT}/status/`,
  status: (name: string): string => `${ROOT}/status/${name}`,
  nodes: `${ROOT}/nodes/`,
  node: (name: string): string => `${ROOT}/nodes/${name}`,
  /** Lease-bound key that exists while the node's agent heartbeats. */
  nodeAlive: (name: string): string => `${ROOT}/alive/${name}`,
  alive: `${ROOT}/alive/`,
  /** Node health as the manager sees it (Ready / Suspect / Down): see health.ts. */
  nodeHealth: (name: string): string => `${ROOT}/health/${name}`,
  health: `${ROOT}/health/`,
  assignments: (node: string): string => `${ROOT}/assignments/${node}/`,
  assignment: (node: string, name: string): string => `${ROOT}/assignments/${node}/${name}`,
  allAssignments: `${ROOT}/assignments/`,
  nodeImages: (node: string): string => `${ROOT}/images/${node}`,
  images: `${ROOT}/images/`,
  migrations: `${ROOT}/migrations/`,
  migration: (id: string): string => `${ROOT}/migrations/${id}`,
  events: `${ROOT}/events/`,
  event: (id: string): string => `${ROOT}/events/${id}`,
  /** The cluster-wide container network (absent when every node keeps its own local subnet). */
  clusterNetwork: `${ROOT}/network/cluster`,
  /** Named container networks (the cluster network is the implicit `default` one, not stored here). */
  networks: `${ROOT}/networks/`,
  network: (name: string): string => `${ROOT}/networks/${name}`,
  /** Address leases of every container network, one key per address. */
  addressLeases: `${ROOT}/ipam/`,
  addressLease: (ip: string): string => `${ROOT}/ipam/${ip}`,
  /** Join tokens by id (only the hash of each secret). */
  joinTokens: `${ROOT}/join-tokens/`,
  joinToken: (id: string): string => `${ROOT}/join-tokens/${id}`,
  /** Per-node agent credentials of nodes that joined with a token (only the hash of each secret). */
  nodeCredentials: `${ROOT}/credentials/`,
  nodeCredential: (node: string): string => `${ROOT}/credentials/${node}`,
  /** Services by name. */
  services: `${ROOT}/services/`,
  service: (name: string): string => `${ROOT}/services/${name}`,
  /** Replicas leaving their service, drained by the entry point before they are removed. */
  retirements: `${ROOT}/retirements/`,
  retirement: (container: string): string => `${ROOT}/retirements/${container}`,
  /** Holds at the entry point: new requests for a container frozen by a migration wait (key: container name). */
  holds: `${ROOT}/lb/holds/`,
  hold: (container: string): string => `${ROOT}/lb/holds/${container}`,
  /** Entry points that run, lease-bound (key: lb name); a hold waits for their acknowledgement. */
  entryPoints: `${ROOT}/lb/alive/`,
  entryPoint: (name: string): string => `${ROOT}/lb/alive/${name}`,
} as const;

/** The last path segment of a key. */
export function keyName(key: string): string {
  return key.slice(key.lastIndexOf('/') + 1);
}
