/**
 * The node network: bridge + address allocator + prestart hook + port proxy, put together behind
 * the `NodeNetwork` contract the agent uses.
 */
import { mkdir, readdir, rm, rmdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { runCommand } from './command.ts';
import { attachToBridge, checkLinkName, deleteLink, destroyBridge, ensureBridge } from './bridge.ts';
import { netErrors } from './errors.ts';
import { HOOK_FILE, installHook, poststopHook, prestartHook, vethName } from './hook.ts';
import type { HookMode } from './hook.ts';
import { LocalAddressAllocator, checkContainerId } from './ipam.ts';
import type { AddressAllocator, Lease } from './ipam.ts';
import { macFromIp, parseSubnet } from './ipv4.ts';
import type { Subnet } from './ipv4.ts';
import { PortProxy } from './ports.ts';
import { announce, checkOverlay, destroyOverlay, ensureOverlay, overlayLinks, overlayMtu, setFloodList } from './overlay.ts';
import type { OverlayConfig } from './overlay.ts';
import { NamedNetworks } from './named.ts';
import type { NamedNet } from './named.ts';
import type { PortStats, PublishedPorts } from './ports.ts';
import type { AttachOptions, Attachment, NodeNetwork, PortMapping } from './types.ts';

/** Bridge name when none is configured. */
export const DEFAULT_BRIDGE = 'ferry0';
/** Container subnet when none is configured. */
export const DEFAULT_SUBNET = '10.213.0.0/24';

const IPAM_FILE = 'ipam.json';
const PORTS_FILE = 'ports.json';

/** Settings of a node network. */
export interface NodeNetworkOptions {
  /** Directory for the address table, the port table and the hook; made absolute. */
  readonly stateDir: string;
  readonly bridge?: string;
  readonly subnet?: string;
  /** MASQUERADE the subnet's outbound traffic (off by default). */
  readonly outboundNat?: boolean;
  readonly log?: (m: string) => void;
  /** Where addresses come from; default a node-local file in stateDir. */
  readonly allocator?: AddressAllocator;
  /**
   * Join the cluster overlay (VXLAN): `subnet` is then the cluster-wide subnet, every attach names
   * the address the manager leased to the container, and the address follows it between hosts.
   */
  readonly cluster?: OverlayConfig;
}

/** The node network on this host (Linux bridge, veths, userland port proxy). */
export class LocalNodeNetwork implements NodeNetwork {
  readonly stateDir: string;
  readonly bridge: string;
  readonly subnet: Subnet;
  /** Absolute path of the installed hook that bundles name. */
  readonly hookPath: string;
  private readonly outboundNat: boolean;
  private readonly log: (m: string) => void;
  private readonly allocator: AddressAllocator;
  /** Set when the allocator is the node-local file one this network created (destroy removes its file). */
  private readonly localAllocator: LocalAddressAllocator | undefined;
  private readonly ports: PortProxy;
  /** Set on the cluster overlay. */
  readonly cluster: OverlayConfig | undefined;
  /** Named networks (only on the overlay). */
  private readonly named: NamedNetworks | undefined;

  constructor(options: NodeNetworkOptions) {
    this.stateDir = resolve(options.stateDir);
    this.bridge = options.bridge ?? DEFAULT_BRIDGE;
    checkLinkName(this.bridge);
    this.outboundNat = options.outboundNat ?? false;
    this.log = options.log ?? (() => undefined);
    this.localAllocator = options.allocator ? undefined : new LocalAddressAllocator({ file: join(this.stateDir, IPAM_FILE), subnet: options.subnet ?? DEFAULT_SUBNET });
    this.allocator = options.allocator ?? (this.localAllocator as LocalAddressAllocator);
    this.subnet = this.allocator.subnet;
    if (options.allocator && options.subnet !== undefined && parseSubnet(options.subnet).cidr !== this.subnet.cidr) {
      throw netErrors.NET_BAD_CONFIG({ reason: `subnet ${options.subnet} differs from the allocator's ${this.subnet.cidr}` });
    }
    this.cluster = options.cluster;
    if (this.cluster) {
      overlayLinks(this.bridge);
      checkOverlay(this.subnet, this.cluster);
    }
    this.named = this.cluster ? new NamedNetworks({ stateDir: this.stateDir, base: this.bridge, underlayIp: this.cluster.underlayIp, log: this.log }) : undefined;
    this.hookPath = join(this.stateDir, HOOK_FILE);
    this.ports = new PortProxy({ file: join(this.stateDir, PORTS_FILE), log: this.log });
  }

  /** Creates the bridge and its rules if missing and installs the hook; safe to call on every agent start. */
  async init(): Promise<void> {
    await mkdir(this.stateDir, { recursive: true, mode: 0o700 });
    await ensureBridge({ name: this.bridge, subnet: this.subnet, outboundNat: this.outboundNat, gatewayOnly: this.cluster !== undefined }, this.log);
    if (this.cluster) await ensureOverlay(this.bridge, this.subnet, this.cluster, this.log);
    await this.named?.init();
    await installHook(this.stateDir);
    // The hook's fast path reaches a namespace through /run/netns; without the directory it must
    // bind-mount a name, which costs two more forks per start.
    await mkdir('/run/netns', { recursive: true }).catch(() => undefined);
  }

  /** Leases the container's address (the same one on every call) and returns its hooks in the wanted mode. */
  async attach(containerId: string, options: AttachOptions = {}): Promise<Attachment> {
    checkContainerId(containerId);
    const veth = vethName(containerId);
    const clash = (await this.leases()).find((x) => x.lease.containerId !== containerId && vethName(x.lease.containerId) === veth);
    if (clash) {
      // 44 bits of sha256 make this practically impossible; if it happens, say so instead of sharing a link.
      throw netErrors.NET_SETUP_FAILED({ command: `attach ${containerId}`, stderr: `veth name ${veth} is already used by ${clash.lease.containerId}` });
    }
    if (this.cluster && options.ip === undefined) {
      throw netErrors.NET_BAD_CONFIG({ reason: `${containerId} has no address from the cluster IPAM (this node is on the cluster network)` });
    }
    const mode = options.mode ?? 'up';
    if (options.network && options.network.name !== 'default') {
      if (!this.named) throw netErrors.NET_BAD_CONFIG({ reason: `network ${options.network.name}: named networks need the cluster network (this agent runs without --underlay-ip)` });
      const { net, lease } = await this.named.attach(options.network, containerId, options.ip);
      return this.attachment(lease, mode, net);
    }
    // Without a network named, a container that already has a lease in a named network keeps it (a reconnect).
    const held = options.network ? undefined : await this.named?.find(containerId);
    if (held) return this.attachment(await held.net.allocator.allocate(containerId, options.ip ?? held.lease.ip), mode, held.net);
    const lease = await this.allocator.allocate(containerId, options.ip);
    return this.attachment(lease, mode);
  }

  /** Every lease here, the default network's and the named networks'. */
  private async leases(): Promise<Array<{ lease: Lease; net?: NamedNet }>> {
    return [...(await this.allocator.list()).map((lease) => ({ lease })), ...((await this.named?.leases()) ?? [])];
  }

  /**
   * The bridge stops forwarding to the container's port (no learning, no flooding, its learned
   * addresses flushed) while frames from it still go through: new connections and data no longer
   * reach a container about to be frozen, and an answer (and the closing FIN) the app writes before
   * the freeze still leaves. Without this, an answer written after the cut from a socket the app then
   * closed went nowhere: a closed socket is not part of the checkpoint, so no copy ever resent it.
   * Leaving the bridge (`isolate`) resets the port's flags.
   */
  async refuseInbound(containerId: string): Promise<void> {
    checkContainerId(containerId);
    // The hook program does it over rtnetlink (`ip link set … type bridge_slave learning off flood
    // off mcast_flood off bcast_flood off fdb_flush`, one static process: this is inside the freeze).
    await runCommand(this.hookPath, ['mode=refuse', `veth=${vethName(containerId)}`]);
  }

  /**
   * Cuts a container off the network (its host veth leaves the bridge and goes down): the frozen
   * source of a migration, whose kernel would otherwise still answer for connections the target now
   * holds. `announce` (or `bringUp`) connects it again.
   */
  async isolate(containerId: string): Promise<boolean> {
    checkContainerId(containerId);
    return runCommand(this.hookPath, ['mode=isolate', `veth=${vethName(containerId)}`]).then(() => true, () => false);
  }

  /**
   * Connects the container's host veth and, on the overlay, tells every host where its address now
   * is (a gratuitous ARP from inside its namespace, process `pid`).
   */
  async announce(attachment: Attachment, pid: number): Promise<void> {
    await this.bringUp(attachment);
    if (this.cluster && pid > 0) await announce(pid, attachment.ip).catch((e: Error) => this.log(`network: gratuitous ARP for ${attachment.ip} failed (traffic still finds it by flooding): ${e.message}`));
  }

  /** On the overlay: makes `peers` (the other hosts' underlay addresses) the VXLAN flood list. */
  async setPeers(peers: readonly string[]): Promise<void> {
    if (!this.cluster) return;
    await this.named?.setPeers(peers);
    const { added, removed } = await setFloodList(this.bridge, this.cluster, peers);
    if (added.length + removed.length > 0) this.log(`network: overlay peers${added.length ? ` +${added.join(',')}` : ''}${removed.length ? ` -${removed.join(',')}` : ''}`);
  }

  /** Unpublishes the container's ports, deletes its host veth if left, and frees its address; idempotent. */
  async detach(containerId: string): Promise<void> {
    checkContainerId(containerId);
    await this.ports.unpublish(containerId);
    await deleteLink(vethName(containerId));
    await this.allocator.release(containerId);
    await this.named?.release(containerId);
  }

  /** Connects a `mode=down` attachment's host veth to the bridge and brings it up (the hook program, as `ip link set … master B up`). */
  async bringUp(attachment: Attachment): Promise<void> {
    checkLinkName(attachment.hostVeth);
    await runCommand(this.hookPath, ['mode=connect', `veth=${attachment.hostVeth}`, `bridge=${attachment.bridge ?? this.bridge}`]);
  }

  /** Makes `ports` the container's published set (see PortProxy.publish). */
  publish(containerId: string, ip: string, ports: PortMapping[]): Promise<void> {
    return this.ports.publish(containerId, ip, ports);
  }

  /** Stops forwarding the container's ports and forgets them; idempotent. */
  unpublish(containerId: string, drainMs = 0): Promise<void> {
    return this.ports.unpublish(containerId, drainMs);
  }

  /** The persisted port table (after a restart: what to re-publish, or unpublish for gone containers). */
  published(): Promise<PublishedPorts[]> {
    return this.ports.published();
  }

  /** Connection counters of a container's published ports. */
  portStats(containerId: string): Promise<PortStats[]> {
    return this.ports.stats(containerId);
  }

  /** Attachments of every leased address (hooks in mode `up`), for adoption and cleanup. */
  async list(): Promise<Attachment[]> {
    return (await this.leases()).map((x) => this.attachment(x.lease, 'up', x.net));
  }

  /** Stops the port listeners of this process and keeps all state (agent shutdown; restart re-publishes). */
  close(): Promise<void> {
    return this.ports.close();
  }

  /** Removes listeners, host veths, leases, the bridge, its rules and the state files. */
  async destroy(): Promise<void> {
    await this.ports.clear();
    for (const x of await this.leases()) await deleteLink(vethName(x.lease.containerId));
    await this.named?.destroy();
    const leases = await this.allocator.list();
    // The local table goes as a whole (also when another instance already removed it); a shared
    // allocator only gives back this node's leases.
    if (this.localAllocator) await this.localAllocator.clear();
    else for (const lease of leases) await this.allocator.release(lease.containerId);
    if (this.cluster) await destroyOverlay(this.bridge, this.subnet, this.log);
    await destroyBridge(this.bridge, this.log);
    await rm(this.hookPath, { force: true });
    // The directory may be shared with other agent state; only an empty one is ours to remove.
    const left = await readdir(this.stateDir).catch(() => undefined);
    if (left?.length === 0) await rmdir(this.stateDir);
  }

  private attachment(lease: Lease, mode: HookMode, net?: NamedNet): Attachment {
    const hostVeth = vethName(lease.containerId);
    const bridge = net?.bridge ?? this.bridge;
    const prestart = prestartHook(this.hookPath, {
      mode,
      address: `${lease.ip}/${lease.prefixLength}`,
      gateway: lease.gateway,
      gatewayMac: macFromIp(lease.gateway),
      mac: lease.mac,
      veth: hostVeth,
      bridge,
      ...(this.cluster ? { mtu: overlayMtu(this.cluster) } : {}),
    });
    return {
      containerId: lease.containerId,
      ip: lease.ip,
      prefixLength: lease.prefixLength,
      gateway: lease.gateway,
      mac: lease.mac,
      hostVeth,
      bridge,
      hooks: { prestart: [prestart], poststop: [poststopHook(this.hookPath, hostVeth)] },
    };
  }
}

/** Connects a `mode=down` attachment's host veth to its bridge and brings it up (migration restore). */
export function bringUp(attachment: Attachment): Promise<void> {
  return attachToBridge(attachment.hostVeth, attachment.bridge ?? DEFAULT_BRIDGE);
}
