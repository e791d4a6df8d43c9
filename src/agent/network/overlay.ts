/**
 * The cluster overlay on one host: the node's container bridge joined to one flat cluster-wide
 * subnet by a Linux VXLAN device, so a container keeps its address (and MAC) on whatever host runs it.
 *
 *   container eth0 ─ veth ─┐
 *                          ├─ bridge (gateway G/32, MAC m(G): the same on every host — an anycast gateway)
 *   host ─ <bridge>h ─ <bridge>p ─┤   <bridge>h holds the host's own overlay address H/prefix, MAC m(H)
 *                          └─ <bridge>x  vxlan VNI, local = underlay IP, flood list = the other hosts
 *
 * Containers send off-subnet traffic to G, which every host answers itself (their permanent
 * neighbour entry names m(G), a local MAC of every bridge), so a migrated container finds its gateway
 * at once. Frames from m(G) never cross the VXLAN (ebtables), or one host would take another's
 * traffic. The host reaches every container, local or not, through <bridge>h with its own address
 * and MAC: replies come back to the right host. MACs and bridge ports are learnt; a restored
 * container announces itself with a gratuitous ARP, and until then unknown unicast floods.
 */
import { ipBatch, runCommand } from './command.ts';
import { linkInfo, checkLinkName, ensureRule, ruleTag, writeSysctl } from './bridge.ts';
import type { IptablesRule } from './bridge.ts';
import { netErrors } from './errors.ts';
import { intToIp, ipToInt, macFromIp } from './ipv4.ts';
import type { Subnet } from './ipv4.ts';

/** The UDP port of VXLAN (IANA). */
export const VXLAN_PORT = 4789;
/** VXLAN over IPv4 takes 50 bytes of each underlay frame. */
export const VXLAN_OVERHEAD = 50;

/** What a host needs to join the overlay. */
export interface OverlayConfig {
  /** VXLAN network identifier of the cluster. */
  readonly vni: number;
  /** This host's underlay address: the VXLAN tunnel endpoint. */
  readonly underlayIp: string;
  /** This host's own address inside the cluster subnet (leased by the manager). */
  readonly hostIp: string;
  /** UDP port; default 4789. */
  readonly dstPort?: number;
  /** MTU of the underlay link; default 1500. Containers get this minus the VXLAN overhead. */
  readonly underlayMtu?: number;
}

/** Names of the links the overlay adds beside bridge `b`. */
export function overlayLinks(bridge: string): { vxlan: string; hostSide: string; bridgeSide: string } {
  if (bridge.length > 14) throw netErrors.NET_BAD_CONFIG({ reason: `bridge name "${bridge}" is too long for the cluster network (14 characters at most)` });
  return { vxlan: `${bridge}x`, hostSide: `${bridge}h`, bridgeSide: `${bridge}p` };
}

/** The MTU containers get on the overlay. */
export function overlayMtu(config: OverlayConfig): number {
  return (config.underlayMtu ?? 1500) - VXLAN_OVERHEAD;
}

/** Throws NET_BAD_CONFIG when the config cannot work with `subnet`. */
export function checkOverlay(subnet: Subnet, config: OverlayConfig): void {
  if (!Number.isInteger(config.vni) || config.vni < 1 || config.vni > 16_777_215) {
    throw netErrors.NET_BAD_CONFIG({ reason: `VXLAN id ${config.vni} is outside 1..16777215` });
  }
  const host = ipToInt(config.hostIp);
  if (host === undefined || host < subnet.firstHost || host > subnet.lastHost || config.hostIp === subnet.gateway) {
    throw netErrors.NET_BAD_CONFIG({ reason: `host address ${config.hostIp} is not a usable address of ${subnet.cidr}` });
  }
  const under = ipToInt(config.underlayIp);
  if (under === undefined) throw netErrors.NET_BAD_CONFIG({ reason: `underlay address "${config.underlayIp}" is not an IPv4 address` });
  if (under >= subnet.firstHost - 1 && under <= subnet.lastHost + 1) {
    throw netErrors.NET_BAD_CONFIG({ reason: `underlay address ${config.underlayIp} lies inside the container subnet ${subnet.cidr}` });
  }
}

/** The ebtables rules keeping the anycast gateway's frames on this host. */
function gatewayRules(vxlan: string, gatewayMac: string): string[][] {
  return ['OUTPUT', 'FORWARD'].map((chain) => [chain, '-o', vxlan, '-s', gatewayMac, '-j', 'DROP']);
}

/** Adds an ebtables rule once (removing duplicates a crash may have left). */
async function ensureEbRule(rule: string[]): Promise<void> {
  await deleteEbRule(rule);
  await runCommand('ebtables', ['--concurrent', '-A', ...rule]);
}

/** Deletes every copy of an ebtables rule; ebtables -D fails once none is left. */
async function deleteEbRule(rule: string[]): Promise<void> {
  for (let i = 0; i < 16; i++) {
    try {
      await runCommand('ebtables', ['--concurrent', '-D', ...rule]);
    } catch {
      return;
    }
  }
}

/** What `ip -d -j link show` says about a vxlan link. */
async function vxlanInfo(name: string): Promise<{ id?: number; local?: string; port?: number } | undefined> {
  try {
    const { stdout } = await runCommand('ip', ['-d', '-j', 'link', 'show', 'dev', name]);
    const [l] = JSON.parse(stdout) as Array<{ linkinfo?: { info_kind?: string; info_data?: { id?: number; local?: string; port?: number } } }>;
    return l?.linkinfo?.info_data ?? {};
  } catch {
    return undefined;
  }
}

/**
 * Makes bridge `bridge` (already created with the gateway as a /32) part of the overlay: host link
 * pair, VXLAN device, ebtables rules. Idempotent; a VXLAN device with other settings is replaced.
 */
export async function ensureOverlay(bridge: string, subnet: Subnet, config: OverlayConfig, log: (m: string) => void = () => undefined): Promise<void> {
  checkLinkName(bridge);
  checkOverlay(subnet, config);
  const { vxlan, hostSide, bridgeSide } = overlayLinks(bridge);
  const mtu = overlayMtu(config);
  const port = config.dstPort ?? VXLAN_PORT;
  const lines: string[] = [];
  const vx = await vxlanInfo(vxlan);
  if (vx && (vx.id !== config.vni || vx.local !== config.underlayIp || (vx.port !== undefined && vx.port !== port))) {
    log(`network: replacing ${vxlan} (vni ${vx.id}, local ${vx.local}) with vni ${config.vni}, local ${config.underlayIp}`);
    lines.push(`link del dev ${vxlan}`);
  }
  if (!vx || lines.length > 0) {
    lines.push(`link add name ${vxlan} mtu ${mtu} type vxlan id ${config.vni} local ${config.underlayIp} dstport ${port} learning`);
    log(`network: joining the cluster overlay: ${vxlan} vni ${config.vni} from ${config.underlayIp}, host address ${config.hostIp}`);
  }
  if (!(await linkInfo(hostSide))) lines.push(`link add name ${hostSide} mtu ${mtu} type veth peer name ${bridgeSide} mtu ${mtu}`);
  lines.push(
    `link set dev ${vxlan} mtu ${mtu} master ${bridge} up`,
    `link set dev ${bridgeSide} mtu ${mtu} master ${bridge} up`,
    `link set dev ${hostSide} mtu ${mtu} address ${macFromIp(config.hostIp)} up`,
    `addr replace ${config.hostIp}/${subnet.prefixLength} dev ${hostSide}`,
    `link set dev ${bridge} mtu ${mtu}`,
  );
  await ipBatch(lines);
  // The host forwards between its containers' gateway and <bridge>h (published ports, outbound NAT).
  await writeSysctl(`/proc/sys/net/ipv4/conf/${hostSide}/forwarding`, '1');
  for (const rule of gatewayRules(vxlan, macFromIp(subnet.gateway))) await ensureEbRule(rule);
  const underlay = await underlayNetwork(config.underlayIp);
  for (const rule of isolationRules(bridge, config.underlayIp, underlay)) await ensureRule(rule);
}

/**
 * Containers never reach the underlay: not this host's underlay address (the agent's API), not the
 * other hosts or the manager behind it; plus the one raw-table rule the host's link into the bridge
 * needs. (Tagged with the bridge, so destroyBridge removes them.)
 */
export function isolationRules(bridge: string, underlayIp: string, underlayCidr: string | undefined): IptablesRule[] {
  const tag = ['-m', 'comment', '--comment', ruleTag(bridge)];
  const { hostSide } = overlayLinks(bridge);
  const rules: IptablesRule[] = [bridge, hostSide].map((dev) => ({ table: 'filter', chain: 'INPUT', position: 'insert', spec: ['-i', dev, '-d', `${underlayIp}/32`, ...tag, '-j', 'DROP'] }));
  if (underlayCidr) rules.push({ table: 'filter', chain: 'FORWARD', position: 'insert', spec: ['-i', bridge, '-d', underlayCidr, ...tag, '-j', 'DROP'] });
  // Frames the host routes into the bridge through its veth pair were tracked (and un-NATed) on the
  // routed leg already; tracked again as bridged frames (br_netfilter), a NATed reply's tuple would
  // clash with its own connection and get its port rewritten — outbound NAT would break.
  rules.push({ table: 'raw', chain: 'PREROUTING', position: 'insert', spec: ['-m', 'physdev', '--physdev-in', overlayLinks(bridge).bridgeSide, ...tag, '-j', 'NOTRACK'] });
  return rules;
}

/** The subnet of the link that holds `ip` on this host (the underlay), as a CIDR; undefined if none does. */
async function underlayNetwork(ip: string): Promise<string | undefined> {
  const { stdout } = await runCommand('ip', ['-j', '-4', 'addr', 'show']);
  const links = JSON.parse(stdout || '[]') as Array<{ addr_info?: Array<{ local?: string; prefixlen?: number }> }>;
  for (const l of links) {
    for (const a of l.addr_info ?? []) {
      if (a.local !== ip || a.prefixlen === undefined) continue;
      const size = 2 ** (32 - a.prefixlen);
      const base = (ipToInt(ip) as number) - ((ipToInt(ip) as number) % size);
      return `${intToIp(base)}/${a.prefixlen}`;
    }
  }
  return undefined;
}

/** Removes the overlay's links and rules beside `bridge` (the bridge itself is destroyBridge's). */
export async function destroyOverlay(bridge: string, subnet: Subnet, log: (m: string) => void = () => undefined): Promise<void> {
  const { vxlan, hostSide } = overlayLinks(bridge);
  for (const rule of gatewayRules(vxlan, macFromIp(subnet.gateway))) await deleteEbRule(rule);
  for (const name of [vxlan, hostSide]) {
    if (await linkInfo(name)) {
      await runCommand('ip', ['link', 'del', 'dev', name]).catch(() => undefined);
      log(`network: removed ${name}`);
    }
  }
}

/** The flood list of the VXLAN device: the underlay addresses that get broadcast and unknown frames. */
export async function floodList(bridge: string): Promise<string[]> {
  const { vxlan } = overlayLinks(bridge);
  const { stdout } = await runCommand('bridge', ['-j', 'fdb', 'show', 'dev', vxlan]);
  const entries = JSON.parse(stdout || '[]') as Array<{ mac?: string; dst?: string }>;
  return entries.filter((e) => e.mac === '00:00:00:00:00:00' && e.dst).map((e) => e.dst as string);
}

/**
 * Makes the flood list exactly `peers` (other hosts' underlay addresses; this host's own is
 * ignored). Returns what changed.
 */
export async function setFloodList(bridge: string, config: OverlayConfig, peers: readonly string[]): Promise<{ added: string[]; removed: string[] }> {
  const { vxlan } = overlayLinks(bridge);
  const want = new Set(peers.filter((p) => p !== config.underlayIp && ipToInt(p) !== undefined));
  const have = new Set(await floodList(bridge));
  const added = [...want].filter((p) => !have.has(p));
  const removed = [...have].filter((p) => !want.has(p));
  for (const p of added) await runCommand('bridge', ['fdb', 'append', '00:00:00:00:00:00', 'dev', vxlan, 'dst', p]);
  for (const p of removed) await runCommand('bridge', ['fdb', 'del', '00:00:00:00:00:00', 'dev', vxlan, 'dst', p]).catch(() => undefined);
  return { added, removed };
}

/** The busybox the host has (its arping sends the gratuitous ARP). */
const BUSYBOX = '/usr/bin/busybox';

/**
 * Announces `ip` from inside the network namespace of process `pid` (a gratuitous ARP on eth0), so
 * every bridge and VXLAN endpoint learns at once where the container now is. Then asks for the peers
 * whose neighbour entries are still unresolved: a restore with the link down leaves the entries of
 * its connections' peers INCOMPLETE, and the kernel would retry only after a second
 * (retrans_time); an answer to our request completes them at once.
 */
export async function announce(pid: number, ip: string): Promise<void> {
  const ns = `--net=/proc/${pid}/ns/net`;
  await runCommand('nsenter', [ns, '--', BUSYBOX, 'arping', '-U', '-c', '1', '-w', '1', '-I', 'eth0', ip]);
  const { stdout } = await runCommand('nsenter', [ns, '--', 'ip', '-j', 'neigh', 'show', 'dev', 'eth0']);
  const pending = (JSON.parse(stdout || '[]') as Array<{ dst?: string; lladdr?: string; state?: string[] }>)
    .filter((e) => e.dst && !e.lladdr && (e.state ?? []).some((st) => st === 'INCOMPLETE' || st === 'FAILED'))
    .map((e) => e.dst as string);
  // Not awaited: the kernel takes the answer when it comes; arping itself waits up to its deadline.
  for (const peer of pending) void runCommand('nsenter', [ns, '--', BUSYBOX, 'arping', '-c', '1', '-w', '1', '-I', 'eth0', peer]).catch(() => undefined);
}
