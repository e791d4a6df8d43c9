/**
 * IPv4 arithmetic for the node network: subnets, host ranges and the MAC an address implies.
 * Pure functions, no I/O.
 */
import { netErrors } from './errors.ts';

/** A parsed IPv4 subnet with its gateway (the first host address) and usable host range. */
export interface Subnet {
  /** Canonical CIDR text, e.g. `10.213.0.0/24`. */
  readonly cidr: string;
  /** Network address as an unsigned 32-bit integer. */
  readonly network: number;
  readonly prefixLength: number;
  /** Gateway address (network + 1) as text; the bridge holds it. */
  readonly gateway: string;
  /** First and last address a container may get (gateway and broadcast excluded). */
  readonly firstHost: number;
  readonly lastHost: number;
}

// One copy of the address arithmetic: the manager's IPAM and this data plane must agree exactly.
export { ipToInt, intToIp } from '../../model/index.ts';
import { ipToInt, intToIp } from '../../model/index.ts';

/** Parses `a.b.c.d/len` (prefix 8–30, so there is room for a gateway and a container). */
export function parseSubnet(cidr: string): Subnet {
  const [addr, len, extra] = cidr.split('/');
  const base = addr === undefined ? undefined : ipToInt(addr);
  const prefixLength = len !== undefined && /^\d{1,2}$/.test(len) ? Number(len) : NaN;
  if (extra !== undefined || base === undefined || !(prefixLength >= 8 && prefixLength <= 30)) {
    throw netErrors.NET_BAD_CONFIG({ reason: `subnet "${cidr}" is not an IPv4 CIDR with a prefix of 8 to 30` });
  }
  const size = 2 ** (32 - prefixLength);
  if (base % size !== 0) {
    throw netErrors.NET_BAD_CONFIG({ reason: `subnet "${cidr}" has host bits set (network is ${intToIp(base - (base % size))}/${prefixLength})` });
  }
  return {
    cidr: `${intToIp(base)}/${prefixLength}`,
    network: base,
    prefixLength,
    gateway: intToIp(base + 1),
    firstHost: base + 2,
    lastHost: base + size - 2,
  };
}

/** True when `ip` lies in the subnet's container range. */
export function inHostRange(subnet: Subnet, ip: string): boolean {
  const n = ipToInt(ip);
  return n !== undefined && n >= subnet.firstHost && n <= subnet.lastHost;
}

/**
 * The MAC an address implies: `0a:58:` + the four address bytes, as CNI's bridge plugin does.
 * Locally administered and unicast, and the same on every node, so a migrated container keeps it
 * and a permanent neighbour entry for the gateway stays right on the target.
 */
export function macFromIp(ip: string): string {
  const n = ipToInt(ip);
  if (n === undefined) throw netErrors.NET_BAD_CONFIG({ reason: `"${ip}" is not an IPv4 address` });
  const bytes = [0x0a, 0x58, n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}
