/** The manager API's error table. Codes are stable; clients and scripts match on them. */
import { defineErrors } from '../errors/index.ts';

/** API errors. */
export const apiErrors = defineErrors({
  BAD_REQUEST: { status: 400, message: 'bad request: {reason}' },
  UNAUTHORIZED: { status: 401, message: 'missing or wrong API token: {hint}' },
  NODE_CREDENTIAL_FORBIDDEN: {
    status: 403,
    message: 'the credential of node "{node}" cannot {what}: a node credential only makes the agent calls of its own node; other calls need the cluster token',
  },
  JOIN_TOKEN_INVALID: { status: 401, message: 'this join token is not valid for this cluster ({reason}); ask an admin for a new one with `ferry node token create`' },
  JOIN_TOKEN_EXPIRED: { status: 403, message: 'join token {id} expired at {expiresAt}; ask an admin for a new one with `ferry node token create`' },
  JOIN_TOKEN_USED_UP: { status: 403, message: 'join token {id} is used up (it allowed {uses} join(s)); ask an admin for a new one with `ferry node token create`' },
  JOIN_TOKEN_NOT_FOUND: { status: 404, message: 'no join token "{id}"; `ferry node token ls` lists them' },
  NODE_NAME_TAKEN: {
    status: 409,
    message: 'node name "{name}" belongs to a live node; give this host another name (--name), or stop that node\'s agent and join again once `ferry node ls` shows it NotReady',
  },
  ROUTE_NOT_FOUND: { status: 404, message: 'no such API route: {method} {url}' },
  CONTAINER_NOT_FOUND: { status: 404, message: 'no container named "{name}"; `ferry ps -a` lists them' },
  CONTAINER_EXISTS: { status: 409, message: 'a container named "{name}" already exists; pick another name or `ferry rm {name}` first' },
  CONTAINER_DELETING: { status: 409, message: 'container "{name}" is being removed' },
  CONTAINER_NOT_RUNNING: { status: 409, message: 'container "{name}" is not running (it is {phase})' },
  IMAGE_NOT_FOUND: { status: 404, message: 'no image "{image}" on any node; `ferry image ls` lists them, `ferry image import` adds one' },
  PORT_IN_USE: { status: 409, message: 'host port {hostIp}:{hostPort} is already published by container "{holder}"' },
  NODE_NOT_FOUND: { status: 404, message: 'no node named "{name}"; `ferry node ls` lists them' },
  NODE_STILL_READY: { status: 409, message: 'node "{name}" is Ready: its agent still runs; stop the agent first (or `ferry node drain {name}` to move its containers off), then remove it once `ferry node ls` shows it NotReady' },
  NODE_STILL_USED: { status: 409, message: 'node "{name}" still has {count} container(s) placed on it: {containers}; move them (`ferry migrate`) or remove them first' },
  NO_NODE: { status: 503, message: 'no ready node can run this container: {reason}' },
  AGENT_UNREACHABLE: { status: 502, message: 'the agent of node "{node}" did not answer: {reason}' },
  MIGRATION_NOT_FOUND: { status: 404, message: 'no migration "{id}"; `ferry migrations ls` lists them' },
  MIGRATION_NO_TARGET: { status: 409, message: 'no node can take container "{name}" from {from}: {reason}' },
  MIGRATION_ACTIVE: { status: 409, message: 'container "{name}" is already being migrated ({id}); wait for it or `ferry migrations cancel {id}`' },
  NOT_IMPLEMENTED: { status: 501, message: '{what} is not implemented yet: {hint}' },
  TIMEOUT: { status: 504, message: 'timed out after {ms} ms waiting for {what}' },
  PAYLOAD_TOO_LARGE: { status: 413, message: 'request body too large: {reason}' },
  NETWORK_NOT_CONFIGURED: {
    status: 404,
    message: 'this cluster has no cluster-wide container network: each node gives its containers addresses from its own local subnet; start the manager with --cluster-subnet CIDR --vni N to have one',
  },
  NETWORK_UNDERLAY_MISSING: {
    status: 409,
    message: 'node "{name}" registered without an underlay IP, but this cluster carries its container network {subnet} (vni {vni}) over VXLAN between hosts: give the agent the address the other nodes reach this host at, then start it again',
  },
  NETWORK_UNDERLAY_INSIDE: {
    status: 409,
    message: 'node "{name}" gave underlay IP {underlayIp}, which lies inside the cluster container network {subnet}: the VXLAN tunnels must run over the hosts\' own network; give the agent this host\'s address on the network between the nodes',
  },
  NETWORK_SUBNET_OVERLAP: {
    status: 409,
    message: 'node "{name}" uses the local container subnet {subnet}, which overlaps {other}: give the node a local subnet that neither the cluster network nor another node uses',
  },
  NETWORKS_NEED_CLUSTER: {
    status: 409,
    message: 'named networks need a cluster-wide container network, and this cluster has none (each node gives its containers addresses from its own local subnet); start the manager with --cluster-subnet CIDR --vni N to have one',
  },
  NETWORK_NOT_FOUND: { status: 404, message: 'network "{name}" does not exist; create it with `ferry network create {name}` (`ferry network ls` lists them)' },
  NETWORK_EXISTS: { status: 409, message: 'a network named "{name}" already exists; pick another name or `ferry network rm {name}` first' },
  NETWORK_DEFAULT: { status: 409, message: 'network "default" is the cluster network: it cannot be {what}' },
  NETWORK_IN_USE: { status: 409, message: 'network "{name}" is still used by {count} container(s): {containers}; remove them first (`ferry rm {args}`)' },
  NETWORK_CREATE_BUSY: { status: 503, message: 'found no free subnet and vni for network "{name}": other networks were being created at the same time; try again' },
  CONTAINER_FIELD_FIXED: { status: 409, message: 'the {field} of container "{name}" is fixed when it is created; remove it and run it again to change it' },
});
