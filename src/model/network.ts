/**
 * The cluster-wide container network: one flat subnet carried between hosts by VXLAN, stored at
 * `/ferry/network/cluster`, with one address lease per holder at `/ferry/ipam/<ip>`.
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

/** One leased address at `/ferry/ipam/<ip>`; `owner` is `container/<uid>` or `node/<name>`. */
export const AddressLeaseSchema = Type.Object({
  ip: Type.String(),
  owner: Type.String(),
  createdAt: Type.String(),
});
/** One leased address at `/ferry/ipam/<ip>`. */
export type AddressLease = Static<typeof AddressLeaseSchema>;

/** The cluster network's error table (`FERRY_ERR_NETWORK_*`). */
export const networkErrors = defineErrors({
  NETWORK_BAD_CONFIG: { status: 400, message: 'bad cluster network: {reason}' },
  NETWORK_CONFLICT: {
    status: 409,
    message: "this cluster's container network is {stored} (vni {storedVni}); the manager was started with {given} (vni {givenVni}) — start it with --cluster-subnet {stored} --vni {storedVni}",
  },
  NETWORK_BAD_CIDR: { status: 400, message: '"{value}" is not an IPv4 subnet: {reason}' },
  NETWORK_FULL: {
    status: 503,
    message: 'the cluster network {subnet} is full: all {size} addresses are in use ({inUse} leases); remove containers, or start a new cluster with a larger --cluster-subnet',
  },
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

/** Validates `subnet` and `vni` and returns the network to store; throws NETWORK_BAD_CONFIG. */
export function clusterNetworkOf(subnet: string, vni: number): ClusterNetwork {
  let s: Cidr;
  try {
    s = parseCidr(subnet);
  } catch (e) {
    throw networkErrors.NETWORK_BAD_CONFIG({ reason: `subnet "${subnet}" is not an IPv4 CIDR such as 10.240.0.0/16 (${(e as Error).message})` }, e);
  }
  if (s.prefixLength < MIN_PREFIX || s.prefixLength > MAX_PREFIX) {
    throw networkErrors.NETWORK_BAD_CONFIG({ reason: `subnet "${subnet}" has prefix /${s.prefixLength}; use /${MIN_PREFIX} to /${MAX_PREFIX}` });
  }
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
