/**
 * Container networks. The cluster-wide one (network `default`): one flat subnet carried between hosts
 * by VXLAN, stored at `/ferry/network/cluster`. Named networks (`/ferry/networks/<name>`): each its own
 * subnet and vni, so containers on different networks cannot reach each other. Every holder of an
 * address, in any network, has one lease at `/ferry/ipam/<ip>`.
 */
import { Type, type Static } from 'typebox';
import { defineErrors } from '../errors/index.ts';

/** The cluster network as stored at `/ferry/network/cluster` (set once by the first manager start). */
export const ClusterNetworkSchema = Type.Object({
  /** Canonical CIDR, e.g. `10.240.0.0/16`. */
  subnet: Type.String(),
  prefixLength: Type.Integer({ minimum: 8, maximum: 28 }),
  /** The subnet's first host address: the containers' default gateway. */
  gateway: Type.String(),
  /** VXLAN network id. */
  vni: Type.Integer({ minimum: 1, maximum: 16_777_215 }),
});
/** The cluster network as stored at `/ferry/network/cluster`. */
export type ClusterNetwork = Static<typeof ClusterNetworkSchema>;

/**
 * One leased address at `/ferry/ipam/<ip>` (every network's: their subnets never overlap); `owner` is
 * `container/<uid>`, `node/<name>` (a host's address in the default network) or `node/<name>@<network>`.
 */
export const AddressLeaseSchema = Type.Object({
  ip: Type.String(),
  owner: Type.String(),
  createdAt: Type.String(),
});
/** One leased address at `/ferry/ipam/<ip>`. */
export type AddressLease = Static<typeof AddressLeaseSchema>;

/** The container networks' error table (`FERRY_ERR_NETWORK_*`). */
export const networkErrors = defineErrors({
  NETWORK_BAD_CONFIG: { status: 400, message: 'bad cluster network: {reason}' },
  NETWORK_CONFLICT: {
    status: 409,
    message: "this cluster's container network is {stored} (vni {storedVni}); the manager was started with {given} (vni {givenVni}) — start it with --cluster-subnet {stored} --vni {storedVni}",
  },
  NETWORK_BAD_CIDR: { status: 400, message: '"{value}" is not an IPv4 subnet: {reason}' },
  NETWORK_FULL: { status: 503, message: '{what} {subnet} is full: all {size} addresses are in use ({inUse} leases); {hint}' },
  NETWORK_BAD_SPEC: { status: 400, message: 'bad network: {reason}' },
  NETWORK_SUBNET_TAKEN: { status: 409, message: 'subnet {subnet} overlaps {other}; give another --subnet, or leave it out to get a free one' },
  NETWORK_VNI_TAKEN: { status: 409, message: 'vni {vni} is already used by {holder}; give another --vni, or leave it out to get a free one' },
  NETWORK_POOL_FULL: { status: 409, message: 'no free /{prefix} is left in {pool} for a new network; give one with --subnet' },
});

/** A parsed IPv4 subnet. */
export interface Cidr {
  /** Canonical text, e.g. `10.240.0.0/16`. */
  readonly cidr: string;
  /** Network address as an unsigned 32-bit integer. */
  readonly network: number;
  readonly prefixLength: number;
  /** Number of addresses, network and broadcast included. */
  readonly size: number;
  /** The first host address (network + 1), as text. */
  readonly gateway: string;
  /** First and last address a holder may lease (gateway and broadcast excluded). */
  readonly firstHost: number;
  readonly lastHost: number;
}

// The agent's data plane (src/agent/network/ipv4.ts) uses these too: the manager's IPAM and the
// bridges must agree on every address and MAC.
const DOTTED = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parses dotted-quad text to an unsigned integer, or undefined when it is not an IPv4 address. */
export function ipToInt(ip: string): number | undefined {
  const m = DOTTED.exec(ip);
  if (!m) return undefined;
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i] as string;
    // Leading zeros are refused because some tools read them as octal.
    if ((part.length > 1 && part.startsWith('0')) || Number(part) > 255) return undefined;
    n = n * 256 + Number(part);
  }
  return n;
}

/** Formats an unsigned integer as dotted-quad text. */
export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** Parses `a.b.c.d/len` with the prefix in 8..30 and no host bits set; throws NETWORK_BAD_CIDR. */
export function parseCidr(value: string): Cidr {
  const bad = (reason: string) => networkErrors.NETWORK_BAD_CIDR({ value, reason });
  const [addr, len, extra] = value.split('/');
  const base = addr === undefined ? undefined : ipToInt(addr);
  const prefixLength = len !== undefined && /^\d{1,2}$/.test(len) ? Number(len) : NaN;
  if (extra !== undefined || base === undefined || !(prefixLength >= 8 && prefixLength <= 30)) throw bad('write it as a.b.c.d/len with a prefix of 8 to 30');
  const size = 2 ** (32 - prefixLength);
  if (base % size !== 0) throw bad(`host bits are set (the network is ${intToIp(base - (base % size))}/${prefixLength})`);
  return { cidr: `${intToIp(base)}/${prefixLength}`, network: base, prefixLength, size, gateway: intToIp(base + 1), firstHost: base + 2, lastHost: base + size - 2 };
}

/**
 * The MAC an address implies: `0a:58:` + the four address bytes (as CNI's bridge plugin does), so a
 * migrated container keeps its MAC along with its address.
 */
export function macFromIp(ip: string): string {
  const n = ipToInt(ip);
  if (n === undefined) throw networkErrors.NETWORK_BAD_CONFIG({ reason: `"${ip}" is not an IPv4 address` });
  return [0x0a, 0x58, n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** Smallest and largest prefix a cluster subnet may have (/28 still leaves 13 holders). */
const MIN_PREFIX = 8;
const MAX_PREFIX = 28;

/** Parses `subnet` and checks its prefix is in min..max; `fail(reason)` makes the error to throw. */
function subnetWithin(subnet: string, min: number, max: number, example: string, fail: (reason: string, cause?: unknown) => Error): Cidr {
  let s: Cidr;
  try {
    s = parseCidr(subnet);
  } catch (e) {
    throw fail(`subnet "${subnet}" is not an IPv4 CIDR such as ${example} (${(e as Error).message})`, e);
  }
  if (s.prefixLength < min || s.prefixLength > max) throw fail(`subnet "${subnet}" has prefix /${s.prefixLength}; use /${min} to /${max}`);
  return s;
}

/** Validates `subnet` and `vni` and returns the network to store; throws NETWORK_BAD_CONFIG. */
export function clusterNetworkOf(subnet: string, vni: number): ClusterNetwork {
  const s = subnetWithin(subnet, MIN_PREFIX, MAX_PREFIX, '10.240.0.0/16', (reason, e) => networkErrors.NETWORK_BAD_CONFIG({ reason }, e));
  if (!Number.isInteger(vni) || vni < 1 || vni > 16_777_215) {
    throw networkErrors.NETWORK_BAD_CONFIG({ reason: `vni ${vni} is not a VXLAN network id (an integer from 1 to 16777215)` });
  }
  return { subnet: s.cidr, prefixLength: s.prefixLength, gateway: s.gateway, vni };
}

/** True when `ip` (dotted quad) lies anywhere in `cidr`, network and broadcast included. */
export function subnetContains(cidr: string, ip: string): boolean {
  const s = parseCidr(cidr);
  const n = ipToInt(ip);
  return n !== undefined && n >= s.network && n < s.network + s.size;
}

/** True when the two subnets share an address. */
export function subnetsOverlap(a: string, b: string): boolean {
  const x = parseCidr(a);
  const y = parseCidr(b);
  return x.network < y.network + y.size && y.network < x.network + x.size;
}

/**
 * The implicit network every container without `--network` is on: the cluster network itself (not
 * stored as a Network object).
 */
export const DEFAULT_NETWORK = 'default';

/** Where named networks get their subnet when none is given: the next free /24 in here. */
export const NETWORK_POOL = '10.217.0.0/16';
/** Prefix of an automatically chosen subnet. */
const AUTO_PREFIX = 24;
/** Smallest and largest prefix a named network's subnet may have. */
const NAMED_MIN_PREFIX = 16;
const NAMED_MAX_PREFIX = 28;
const MAX_VNI = 16_777_215;

/** A named network's addressing: what `ferry network create` chose or was given. */
export const NetworkSpecSchema = Type.Object({
  /** Canonical CIDR, e.g. `10.217.0.0/24`. */
  subnet: Type.String(),
  /** VXLAN network id, unique among the cluster network and every named network. */
  vni: Type.Integer({ minimum: 1, maximum: MAX_VNI }),
});
/** A named network's addressing. */
export type NetworkSpec = Static<typeof NetworkSpecSchema>;

/** A named network as stored at `/ferry/networks/<name>`: containers on it reach only each other. */
export const NetworkSchema = Type.Object({
  apiVersion: Type.Literal('ferry/v1'),
  kind: Type.Literal('Network'),
  metadata: Type.Object({ name: Type.String(), uid: Type.String(), createdAt: Type.String(), labels: Type.Record(Type.String(), Type.String()) }),
  spec: NetworkSpecSchema,
});
/** A named network as stored at `/ferry/networks/<name>`. */
export type Network = Static<typeof NetworkSchema>;

/** Any network (the default one or a named one) as IPAM and agents need it. */
export type NetworkAddressing = ClusterNetwork & { name: string };

/** The default network's addressing. */
export function defaultAddressing(cluster: ClusterNetwork): NetworkAddressing {
  return { name: DEFAULT_NETWORK, subnet: cluster.subnet, prefixLength: cluster.prefixLength, gateway: cluster.gateway, vni: cluster.vni };
}

/** A named network's addressing. */
export function addressingOf(n: Network): NetworkAddressing {
  const s = parseCidr(n.spec.subnet);
  return { name: n.metadata.name, subnet: s.cidr, prefixLength: s.prefixLength, gateway: s.gateway, vni: n.spec.vni };
}

/** A network as `GET /v1/networks` shows it: the default one first, then the named ones. */
export interface NetworkView extends NetworkAddressing {
  /** True for the cluster network (containers without `--network`). */
  default: boolean;
  labels: Record<string, string>;
  /** Absent for the default network. */
  createdAt?: string;
  /** Names of the containers on it. */
  containers: string[];
}

/** What a new network's subnet and vni may not collide with. */
export interface NetworkSpace {
  cluster: ClusterNetwork;
  /** Named networks already stored. */
  networks: { name: string; subnet: string; vni: number }[];
  /** Nodes' local container subnets. */
  nodeSubnets: { node: string; subnet: string }[];
  /** Nodes' underlay addresses (the VXLAN tunnels must not run inside a container network). */
  underlayIps: { node: string; ip: string }[];
}

/**
 * Chooses (when absent) and checks (when given) a new network's subnet and vni against `space`:
 * a subnet of /16 to /28 overlapping nothing there, a vni nobody uses. Auto: the cluster vni + 1,
 * + 2, … first free, and the first free /24 of NETWORK_POOL. Pure.
 */
export function planNetworkSpec(want: { subnet?: string; vni?: number }, space: NetworkSpace): NetworkSpec {
  return { subnet: want.subnet === undefined ? autoSubnet(space) : checkSubnet(want.subnet, space), vni: want.vni === undefined ? autoVni(space) : checkVni(want.vni, space) };
}

/** What `subnet` overlaps in `space`, in words, or undefined. */
function subnetClash(subnet: string, space: NetworkSpace): string | undefined {
  if (subnetsOverlap(subnet, space.cluster.subnet)) return `the cluster network ${space.cluster.subnet} (network "${DEFAULT_NETWORK}")`;
  for (const n of space.networks) if (subnetsOverlap(subnet, n.subnet)) return `network "${n.name}" (${n.subnet})`;
  for (const n of space.nodeSubnets) if (subnetsOverlap(subnet, n.subnet)) return `the local container subnet ${n.subnet} of node "${n.node}"`;
  for (const u of space.underlayIps) if (subnetContains(subnet, u.ip)) return `the underlay address ${u.ip} of node "${u.node}"`;
  return undefined;
}

function checkSubnet(subnet: string, space: NetworkSpace): string {
  const s = subnetWithin(subnet, NAMED_MIN_PREFIX, NAMED_MAX_PREFIX, '10.217.3.0/24', (reason, e) => networkErrors.NETWORK_BAD_SPEC({ reason }, e));
  const clash = subnetClash(s.cidr, space);
  if (clash) throw networkErrors.NETWORK_SUBNET_TAKEN({ subnet: s.cidr, other: clash });
  return s.cidr;
}

function autoSubnet(space: NetworkSpace): string {
  const pool = parseCidr(NETWORK_POOL);
  const step = 2 ** (32 - AUTO_PREFIX);
  for (let n = pool.network; n < pool.network + pool.size; n += step) {
    const cidr = `${intToIp(n)}/${AUTO_PREFIX}`;
    if (!subnetClash(cidr, space)) return cidr;
  }
  throw networkErrors.NETWORK_POOL_FULL({ pool: NETWORK_POOL, prefix: AUTO_PREFIX });
}

function vniHolder(vni: number, space: NetworkSpace): string | undefined {
  if (vni === space.cluster.vni) return `the cluster network (network "${DEFAULT_NETWORK}")`;
  const n = space.networks.find((x) => x.vni === vni);
  return n ? `network "${n.name}"` : undefined;
}

function checkVni(vni: number, space: NetworkSpace): number {
  if (!Number.isInteger(vni) || vni < 1 || vni > MAX_VNI) throw networkErrors.NETWORK_BAD_SPEC({ reason: `vni ${vni} is not a VXLAN network id (an integer from 1 to ${MAX_VNI})` });
  const holder = vniHolder(vni, space);
  if (holder) throw networkErrors.NETWORK_VNI_TAKEN({ vni, holder });
  return vni;
}

function autoVni(space: NetworkSpace): number {
  // Wraps past the top so a cluster vni near the limit still finds one.
  for (let i = 1; i < MAX_VNI; i++) {
    const vni = ((space.cluster.vni - 1 + i) % MAX_VNI) + 1;
    if (!vniHolder(vni, space)) return vni;
  }
  throw networkErrors.NETWORK_BAD_SPEC({ reason: 'every VXLAN network id is taken' });
}
