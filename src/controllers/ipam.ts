/**
 * Address management (IPAM) of every container network, the default (cluster) one and the named ones:
 * one lease per address at `/ferry/ipam/<ip>` (subnets never overlap), taken with
 * the store's create-if-absent, so two holders never share an address however many managers or
 * requests race. Pure store logic: no I/O besides the store.
 */
import type { KeyValue, Store } from '../store/index.ts';
import { isFerryError } from '../errors/index.ts';
import type { AddressLease, ClusterNetwork, Container, Network, NetworkAddressing } from '../model/index.ts';
import { keys, intToIp, keyName, parseCidr, subnetContains, networkErrors, addressingOf, defaultAddressing, DEFAULT_NETWORK } from '../model/index.ts';

/** The lease owner of a container (by uid: a migration keeps the uid, so the address stays). */
export function containerOwner(uid: string): string {
  return `container/${uid}`;
}

/**
 * The lease owner of a node's own address in a network: `node/<name>` in the default network,
 * `node/<name>@<network>` in a named one (names never hold `@`).
 */
export function nodeOwner(name: string, network: string = DEFAULT_NETWORK): string {
  return network === DEFAULT_NETWORK ? `node/${name}` : `node/${name}@${network}`;
}

/** The cluster network stored at start, or undefined when nodes keep their own local subnets. */
export async function clusterNetwork(store: Store): Promise<ClusterNetwork | undefined> {
  return (await store.get<ClusterNetwork>(keys.clusterNetwork))?.value;
}

/**
 * Stores `want` as the cluster network, or checks it equals the stored one: the subnet and vni of a
 * cluster never change (addresses already leased would fall outside). Throws NETWORK_CONFLICT.
 */
export async function ensureClusterNetwork(store: Store, want: ClusterNetwork): Promise<ClusterNetwork> {
  for (;;) {
    const cur = await store.get<ClusterNetwork>(keys.clusterNetwork);
    if (cur) {
      if (cur.value.subnet !== want.subnet || cur.value.vni !== want.vni) {
        throw networkErrors.NETWORK_CONFLICT({ stored: cur.value.subnet, storedVni: cur.value.vni, given: want.subnet, givenVni: want.vni });
      }
      return cur.value;
    }
    try {
      return (await store.create<ClusterNetwork>(keys.clusterNetwork, want)).value;
    } catch (e) {
      if (!isFerryError(e, 'STORE_EXISTS')) throw e; // another manager stored one first: compare with it
    }
  }
}

/**
 * Returns `owner`'s address, leasing the lowest free one (never the network, gateway or broadcast
 * address) when it has none. Idempotent per owner; concurrent calls for one owner all return the
 * same address. Throws NETWORK_FULL when no address is left.
 */
export async function allocateAddress(store: Store, net: ClusterNetwork | NetworkAddressing, owner: string): Promise<string> {
  const { items } = await store.list<AddressLease>(keys.addressLeases);
  const inNet = (kv: KeyValue<AddressLease>): boolean => subnetContains(net.subnet, kv.value.ip);
  // A lease of this owner outside the subnet is stale (a network removed and made again with another subnet).
  for (const kv of items) if (kv.value.owner === owner && !inNet(kv)) await deleteLease(store, kv);
  const mine = items.filter((kv) => kv.value.owner === owner && inNet(kv));
  if (mine.length > 0) return converge(store, mine);
  const used = new Set(items.map((kv) => kv.value.ip));
  const { firstHost: first, lastHost: last } = parseCidr(net.subnet);
  for (let n = first; n <= last; n++) {
    const ip = intToIp(n);
    if (used.has(ip)) continue;
    try {
      await store.create<AddressLease>(keys.addressLease(ip), { ip, owner, createdAt: new Date().toISOString() });
    } catch (e) {
      if (isFerryError(e, 'STORE_EXISTS')) continue; // taken since the list: try the next
      throw e;
    }
    const now = (await leasesOf(store, owner)).filter(inNet);
    return now.length > 0 ? converge(store, now) : ip;
  }
  const inUse = (await store.list<AddressLease>(keys.addressLeases)).items.filter(inNet).length;
  const name = 'name' in net ? net.name : DEFAULT_NETWORK;
  throw networkErrors.NETWORK_FULL(name === DEFAULT_NETWORK
    ? { what: 'the cluster network', subnet: net.subnet, size: last - first + 1, inUse, hint: 'remove containers, or start a new cluster with a larger --cluster-subnet' }
    : { what: `network "${name}"`, subnet: net.subnet, size: last - first + 1, inUse, hint: `remove containers from it, or make another network with a larger --subnet` });
}

/**
 * Keeps the owner's first-created lease and deletes the rest. The first-created one is what every
 * concurrent caller sees once its own create is done, so all of them return the same address.
 */
async function converge(store: Store, leases: KeyValue<AddressLease>[]): Promise<string> {
  const [keep, ...extra] = [...leases].sort((a, b) => a.createRevision - b.createRevision);
  for (const kv of extra) await deleteLease(store, kv);
  return keep!.value.ip;
}

async function leasesOf(store: Store, owner: string): Promise<KeyValue<AddressLease>[]> {
  return (await store.list<AddressLease>(keys.addressLeases)).items.filter((kv) => kv.value.owner === owner);
}

/** Deletes the lease as it was listed; one released and re-taken meanwhile is left alone. */
async function deleteLease(store: Store, kv: KeyValue<AddressLease>): Promise<boolean> {
  try {
    await store.delete(kv.key, kv.modRevision);
    return true;
  } catch (e) {
    if (isFerryError(e, 'STORE_NOT_FOUND') || isFerryError(e, 'STORE_CONFLICT')) return false;
    throw e;
  }
}

/** Frees every address `owner` holds and returns them; a no-op when it holds none. */
export async function releaseAddresses(store: Store, owner: string): Promise<string[]> {
  const released: string[] = [];
  for (const kv of await leasesOf(store, owner)) if (await deleteLease(store, kv)) released.push(kv.value.ip);
  return released;
}

/** Frees every address node `name` holds: its own on the default network and on each named one. */
export async function releaseNodeAddresses(store: Store, name: string): Promise<string[]> {
  const own = nodeOwner(name);
  const released: string[] = [];
  for (const kv of (await store.list<AddressLease>(keys.addressLeases)).items) {
    if (kv.value.owner !== own && !kv.value.owner.startsWith(`${own}@`)) continue;
    if (await deleteLease(store, kv)) released.push(kv.value.ip);
  }
  return released;
}

/**
 * Frees the addresses of containers that no longer exist (a manager that stopped between deleting a
 * container and releasing its lease leaves one behind), and the hosts' addresses in named networks
 * that no longer exist (removing a network ends with this). Returns the freed addresses.
 */
export async function sweepLeases(store: Store): Promise<string[]> {
  // Leases first, containers and networks second: a lease listed here was taken after its container
  // or network was created, so one missing from the later lists is really gone.
  const leases = (await store.list<AddressLease>(keys.addressLeases)).items;
  if (leases.length === 0) return [];
  const [containers, networks] = await Promise.all([store.list<Container>(keys.containers), store.list<Network>(keys.networks)]);
  const live = new Set(containers.items.map((kv) => containerOwner(kv.value.metadata.uid)));
  const nets = new Set(networks.items.map((kv) => keyName(kv.key)));
  const gone = (owner: string): boolean => {
    if (owner.startsWith('container/')) return !live.has(owner);
    const at = owner.startsWith('node/') ? owner.indexOf('@') : -1;
    return at >= 0 && !nets.has(owner.slice(at + 1));
  };
  const freed: string[] = [];
  for (const kv of leases) {
    if (!gone(kv.value.owner)) continue;
    if (await deleteLease(store, kv)) freed.push(kv.value.ip);
  }
  return freed;
}

/**
 * The addressing of network `name` (absent or `default`: the cluster network), or undefined when
 * there is no such network (or no cluster network, which every named network needs).
 */
export async function networkAddressing(store: Store, name: string | undefined): Promise<NetworkAddressing | undefined> {
  const cluster = await clusterNetwork(store);
  if (!cluster) return undefined;
  if (name === undefined || name === DEFAULT_NETWORK) return defaultAddressing(cluster);
  const n = (await store.get<Network>(keys.network(name)))?.value;
  return n ? addressingOf(n) : undefined;
}
