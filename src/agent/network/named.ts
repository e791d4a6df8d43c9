/**
 * Named networks on one host: besides the cluster's default network, each named network (`ferry
 * network create`) gets its own bridge and VXLAN id, made when the first container on it arrives
 * here, so its containers share one L2 segment across hosts and nothing else. The host routes
 * between none of them: every pair of container bridges gets a FORWARD DROP both ways.
 */
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { destroyBridge, ensureBridge, ensureRule, ruleTag } from './bridge.ts';
import type { IptablesRule } from './bridge.ts';
import { netErrors } from './errors.ts';
import { LocalAddressAllocator } from './ipam.ts';
import type { Lease } from './ipam.ts';
import { parseSubnet } from './ipv4.ts';
import type { Subnet } from './ipv4.ts';
import { destroyOverlay, ensureOverlay, overlayLinks, setFloodList } from './overlay.ts';
import { isRecord, readJson, writeJsonAtomic, SerialQueue } from './state-file.ts';

/** A named network as the manager describes it in an assignment. */
export interface NamedNetworkSpec {
  readonly name: string;
  readonly vni: number;
  readonly subnet: string;
  /** This host's own address in that network. */
  readonly hostIp: string;
}

/** One named network present on this host. */
export interface NamedNet {
  readonly spec: NamedNetworkSpec;
  readonly bridge: string;
  readonly subnet: Subnet;
  readonly allocator: LocalAddressAllocator;
}

const FILE = 'networks.json';

/** The bridge of named network `name` beside base bridge `base`: `fn` + 8 hex digits (room for the overlay's suffixes). */
export function namedBridge(base: string, name: string): string {
  return `fn${createHash('sha256').update(`${base}/${name}`).digest('hex').slice(0, 8)}`;
}

/** FORWARD DROP rules keeping every pair of container networks apart (tagged with the incoming bridge). */
export function separationRules(bridges: readonly string[]): IptablesRule[] {
  const rules: IptablesRule[] = [];
  for (const from of bridges) {
    for (const to of bridges) {
      if (from === to) continue;
      // Routed traffic for another network leaves through its bridge or through the host's own
      // link into it (`<bridge>h`, which holds the route of that subnet on the overlay).
      for (const out of [to, overlayLinks(to).hostSide]) {
        rules.push({ table: 'filter', chain: 'FORWARD', position: 'insert', spec: ['-i', from, '-o', out, '-m', 'comment', '--comment', ruleTag(from), '-j', 'DROP'] });
      }
    }
  }
  return rules;
}

/** The named networks of one host's agent (only on the cluster overlay). */
export class NamedNetworks {
  private readonly nets = new Map<string, NamedNet>();
  private readonly ready = new Set<string>();
  private readonly queue = new SerialQueue();
  private peers: readonly string[] = [];
  private loaded = false;

  constructor(private readonly o: { stateDir: string; base: string; underlayIp: string; log: (m: string) => void }) {}

  /** Reads the networks this host had, and makes their links again where they are missing. */
  async init(): Promise<void> {
    await this.load();
    for (const net of this.nets.values()) await this.queue.run(() => this.build(net));
    await this.separate();
  }

  /**
   * Leases `ip` to `containerId` in network `spec.name`, making the network on this host first if it
   * is not here yet. One queue with `release`, so a network is never taken down under an attach.
   */
  async attach(spec: NamedNetworkSpec, containerId: string, ip: string | undefined): Promise<{ net: NamedNet; lease: Lease }> {
    await this.load();
    const made = await this.queue.run(async () => {
      let net = this.nets.get(spec.name);
      if (!net || net.spec.vni !== spec.vni || net.spec.subnet !== spec.subnet || net.spec.hostIp !== spec.hostIp) {
        if (net && (net.spec.vni !== spec.vni || net.spec.subnet !== spec.subnet) && (await net.allocator.list()).length > 0) {
          throw netErrors.NET_BAD_CONFIG({ reason: `network ${spec.name} is here with vni ${net.spec.vni} and ${net.spec.subnet}, and containers still use it; it cannot become vni ${spec.vni}, ${spec.subnet}` });
        }
        net = this.make(spec);
        this.nets.set(spec.name, net);
        this.ready.delete(spec.name);
        await this.save();
      }
      const fresh = !this.ready.has(spec.name);
      if (fresh) await this.build(net);
      return { net, lease: await net.allocator.allocate(containerId, ip), fresh };
    });
    if (made.fresh) await this.separate();
    return { net: made.net, lease: made.lease };
  }

  /** Frees the container's address; a network left without containers here goes from this host. */
  async release(containerId: string): Promise<void> {
    const held = await this.find(containerId);
    if (!held) return;
    await this.queue.run(async () => {
      await held.net.allocator.release(containerId);
      if (this.nets.get(held.net.spec.name) !== held.net || (await held.net.allocator.list()).length > 0) return;
      await destroyOverlay(held.net.bridge, held.net.subnet, this.o.log);
      await destroyBridge(held.net.bridge, this.o.log);
      await held.net.allocator.clear();
      this.nets.delete(held.net.spec.name);
      this.ready.delete(held.net.spec.name);
      await this.save();
      this.o.log(`network: named network ${held.net.spec.name} has no container here any more; removed ${held.net.bridge}`);
    });
  }

  /** The named network holding a lease for `containerId`, with that lease. */
  async find(containerId: string): Promise<{ net: NamedNet; lease: Lease } | undefined> {
    await this.load();
    for (const net of this.nets.values()) {
      const lease = await net.allocator.get(containerId);
      if (lease) return { net, lease };
    }
    return undefined;
  }

  /** Every lease of every named network, with its network. */
  async leases(): Promise<Array<{ net: NamedNet; lease: Lease }>> {
    await this.load();
    const out: Array<{ net: NamedNet; lease: Lease }> = [];
    for (const net of this.nets.values()) for (const lease of await net.allocator.list()) out.push({ net, lease });
    return out;
  }

  /** Bridges of the named networks present here. */
  bridges(): string[] {
    return [...this.nets.values()].map((n) => n.bridge);
  }

  /** The other hosts' underlay addresses: every named network's flood list. */
  async setPeers(peers: readonly string[]): Promise<void> {
    this.peers = [...peers];
    for (const net of this.nets.values()) {
      if (this.ready.has(net.spec.name)) await setFloodList(net.bridge, this.overlayOf(net), peers);
    }
  }

  /** Removes every named network's links, rules and address tables. */
  async destroy(): Promise<void> {
    await this.load();
    for (const net of this.nets.values()) {
      await destroyOverlay(net.bridge, net.subnet, this.o.log);
      await destroyBridge(net.bridge, this.o.log);
      await net.allocator.clear();
    }
    this.nets.clear();
    this.ready.clear();
    await rm(join(this.o.stateDir, FILE), { force: true });
  }

  /** Also keeps the default network's bridge apart from the named ones. */
  async separate(defaultBridge: string = this.o.base): Promise<void> {
    for (const rule of separationRules([defaultBridge, ...this.bridges()])) await ensureRule(rule);
  }

  private make(spec: NamedNetworkSpec): NamedNet {
    const subnet = parseSubnet(spec.subnet);
    const bridge = namedBridge(this.o.base, spec.name);
    return { spec, bridge, subnet, allocator: new LocalAddressAllocator({ file: join(this.o.stateDir, `ipam-${bridge}.json`), subnet }) };
  }

  private overlayOf(net: NamedNet): { vni: number; underlayIp: string; hostIp: string } {
    return { vni: net.spec.vni, underlayIp: this.o.underlayIp, hostIp: net.spec.hostIp };
  }

  private async build(net: NamedNet): Promise<void> {
    await ensureBridge({ name: net.bridge, subnet: net.subnet, outboundNat: false, gatewayOnly: true }, this.o.log);
    await ensureOverlay(net.bridge, net.subnet, this.overlayOf(net), this.o.log);
    await setFloodList(net.bridge, this.overlayOf(net), this.peers);
    this.ready.add(net.spec.name);
    this.o.log(`network: named network ${net.spec.name} (vni ${net.spec.vni}, ${net.spec.subnet}) on ${net.bridge}`);
  }

  private async load(): Promise<void> {
    if (this.loaded) return;
    this.loaded = true;
    const raw = await readJson(join(this.o.stateDir, FILE));
    if (!isRecord(raw) || !Array.isArray(raw.networks)) return;
    for (const s of raw.networks as NamedNetworkSpec[]) {
      if (typeof s?.name === 'string' && typeof s.vni === 'number' && typeof s.subnet === 'string' && typeof s.hostIp === 'string') this.nets.set(s.name, this.make(s));
    }
  }

  private save(): Promise<void> {
    return writeJsonAtomic(join(this.o.stateDir, FILE), { version: 1, networks: [...this.nets.values()].map((n) => n.spec) });
  }
}
