/**
 * Address management. `AddressAllocator` is the seam the cluster-wide IPAM (leases in the store)
 * will fill later; `LocalAddressAllocator` is the node-local one, persisted in a JSON file.
 */
import { rm } from 'node:fs/promises';
import { netErrors } from './errors.ts';
import { intToIp, ipToInt, inHostRange, macFromIp, parseSubnet } from './ipv4.ts';
import type { Subnet } from './ipv4.ts';
import { SerialQueue, isRecord, readJson, writeJsonAtomic } from './state-file.ts';

/** One container's address: what the allocator promises until it is released. */
export interface Lease {
  readonly containerId: string;
  readonly ip: string;
  readonly prefixLength: number;
  readonly gateway: string;
  /** Derived from the IP (`0a:58:` + bytes), so it is stable wherever the lease is honoured. */
  readonly mac: string;
}

/** Hands out container addresses in one subnet; no two live leases ever share an address. */
export interface AddressAllocator {
  /** The subnet the leases come from (the bridge holds its gateway). */
  readonly subnet: Subnet;
  /**
   * Returns the container's lease, creating one if it has none; idempotent per containerId. With
   * `wanted` (an address the cluster IPAM leased to the container) the lease is exactly that address.
   */
  allocate(containerId: string, wanted?: string): Promise<Lease>;
  /** Frees the container's address; a no-op when it holds none. */
  release(containerId: string): Promise<void>;
  /** The container's lease, or undefined. */
  get(containerId: string): Promise<Lease | undefined>;
  /** Every live lease. */
  list(): Promise<Lease[]>;
}

/** Container ids as runc accepts them; anything else would also be unsafe as a JSON key or a name. */
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** Throws NET_BAD_CONFIG unless `id` is a valid container id. */
export function checkContainerId(id: string): void {
  if (!CONTAINER_ID.test(id)) throw netErrors.NET_BAD_CONFIG({ reason: `"${id}" is not a valid container id` });
}

/** The record's own value for `key` (never one inherited from Object.prototype). */
function own(record: Record<string, string>, key: string): string | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}

/** On-disk shape of the node-local allocator (version 1). */
interface IpamFile {
  version: 1;
  subnet: string;
  /** Last address handed out; the search for the next one starts after it (round-robin, like CNI host-local). */
  last: string | null;
  /** containerId → ip */
  leases: Record<string, string>;
}

/** Node-local allocator: leases in `file`, loaded on first use, rewritten atomically on each change. */
export class LocalAddressAllocator implements AddressAllocator {
  readonly subnet: Subnet;
  private readonly file: string;
  private readonly queue = new SerialQueue();
  private state: IpamFile | undefined;

  constructor(options: { file: string; subnet: string | Subnet }) {
    this.file = options.file;
    this.subnet = typeof options.subnet === 'string' ? parseSubnet(options.subnet) : options.subnet;
  }

  /** Returns the container's lease, taking the next free address round-robin when it has none. */
  async allocate(containerId: string, wanted?: string): Promise<Lease> {
    checkContainerId(containerId);
    if (wanted !== undefined && !inHostRange(this.subnet, wanted)) {
      throw netErrors.NET_BAD_CONFIG({ reason: `address ${wanted} is not a container address of ${this.subnet.cidr}` });
    }
    return this.queue.run(async () => {
      const state = await this.load();
      const held = own(state.leases, containerId);
      if (held !== undefined && (wanted === undefined || held === wanted)) return this.lease(containerId, held);
      if (wanted !== undefined) {
        const holder = Object.entries(state.leases).find(([id, ip]) => ip === wanted && id !== containerId);
        if (holder) throw netErrors.NET_BAD_CONFIG({ reason: `address ${wanted} is already held by ${holder[0]} on this node` });
      }
      const ip = wanted ?? this.nextFree(state);
      await this.save({ ...state, last: ip, leases: { ...state.leases, [containerId]: ip } });
      return this.lease(containerId, ip);
    });
  }

  /** Frees the container's address; a no-op when it holds none. */
  release(containerId: string): Promise<void> {
    return this.queue.run(async () => {
      const state = await this.load();
      if (own(state.leases, containerId) === undefined) return;
      const leases = { ...state.leases };
      delete leases[containerId];
      await this.save({ ...state, leases });
    });
  }

  /** The container's lease, or undefined. */
  get(containerId: string): Promise<Lease | undefined> {
    return this.queue.run(async () => {
      const ip = own((await this.load()).leases, containerId);
      return ip === undefined ? undefined : this.lease(containerId, ip);
    });
  }

  /** Every live lease. */
  list(): Promise<Lease[]> {
    return this.queue.run(async () => {
      const state = await this.load();
      return Object.entries(state.leases).map(([id, ip]) => this.lease(id, ip));
    });
  }

  /** Forgets every lease and removes the file (node network destroy). */
  clear(): Promise<void> {
    return this.queue.run(async () => {
      await rm(this.file, { force: true });
      this.state = undefined;
    });
  }

  private lease(containerId: string, ip: string): Lease {
    return { containerId, ip, prefixLength: this.subnet.prefixLength, gateway: this.subnet.gateway, mac: macFromIp(ip) };
  }

  /** The next free address after `last`, wrapping once; freed addresses come back only after a full turn. */
  private nextFree(state: IpamFile): string {
    const used = new Set(Object.values(state.leases));
    const { firstHost, lastHost } = this.subnet;
    const size = lastHost - firstHost + 1;
    const lastInt = state.last === null ? undefined : ipToInt(state.last);
    const start = lastInt !== undefined && lastInt >= firstHost && lastInt <= lastHost ? lastInt + 1 : firstHost;
    for (let i = 0; i < size; i++) {
      const candidate = firstHost + ((start - firstHost + i) % size);
      const ip = intToIp(candidate);
      if (!used.has(ip)) return ip;
    }
    throw netErrors.NET_POOL_EXHAUSTED({ subnet: this.subnet.cidr, size });
  }

  private async load(): Promise<IpamFile> {
    if (this.state) return this.state;
    const raw = await readJson(this.file);
    const state = raw === undefined ? this.empty() : this.validate(raw);
    this.state = state;
    return state;
  }

  private empty(): IpamFile {
    return { version: 1, subnet: this.subnet.cidr, last: null, leases: {} };
  }

  private validate(raw: unknown): IpamFile {
    const bad = (reason: string) => netErrors.NET_STATE_INVALID({ file: this.file, reason });
    if (!isRecord(raw) || raw.version !== 1 || typeof raw.subnet !== 'string' || !isRecord(raw.leases)) {
      throw bad('not a version 1 address table');
    }
    const leases: Record<string, string> = {};
    for (const [id, ip] of Object.entries(raw.leases)) {
      if (typeof ip !== 'string' || ipToInt(ip) === undefined) throw bad(`lease of ${id} is not an address`);
      leases[id] = ip;
    }
    if (raw.subnet !== this.subnet.cidr) {
      // Leases from another subnet would route nowhere; an empty table just follows the new setting.
      const count = Object.keys(leases).length;
      if (count > 0) {
        throw netErrors.NET_BAD_CONFIG({ reason: `${this.file} holds ${count} leases in ${raw.subnet}, not in the configured ${this.subnet.cidr}; detach those containers first` });
      }
      return this.empty();
    }
    for (const [id, ip] of Object.entries(leases)) {
      if (!inHostRange(this.subnet, ip)) throw bad(`lease of ${id} (${ip}) is outside ${this.subnet.cidr}`);
    }
    const last = typeof raw.last === 'string' && ipToInt(raw.last) !== undefined ? raw.last : null;
    return { version: 1, subnet: this.subnet.cidr, last, leases };
  }

  /** Writes first, then adopts: a failed write leaves memory and disk agreeing on the old table. */
  private async save(state: IpamFile): Promise<void> {
    await writeJsonAtomic(this.file, state);
    this.state = state;
  }
}
