/**
 * The node's bridge: created idempotently in the agent's network namespace with the subnet's
 * gateway address and a fixed MAC, plus the few iptables rules it needs, all tagged so that
 * `destroyBridge` finds and removes exactly what was added.
 */
import { writeFile } from 'node:fs/promises';
import { ipBatch, runCommand } from './command.ts';
import { netErrors } from './errors.ts';
import { macFromIp } from './ipv4.ts';
import type { Subnet } from './ipv4.ts';

/** What the bridge is made of. */
export interface BridgeConfig {
  readonly name: string;
  readonly subnet: Subnet;
  /** Adds a MASQUERADE rule (and forwarding) so containers reach beyond the host; off by default. */
  readonly outboundNat: boolean;
  /**
   * The bridge holds only the gateway (as a /32): on the cluster overlay the host's own address in the
   * subnet lives on a link of its own (see overlay.ts), and the subnet route goes there.
   */
  readonly gatewayOnly?: boolean;
}

/** One iptables rule this component owns. */
export interface IptablesRule {
  readonly table: 'filter' | 'nat' | 'raw';
  readonly chain: string;
  /** `insert` puts it first so a host's DROP rules further down cannot shadow it. */
  readonly position: 'insert' | 'append';
  readonly spec: readonly string[];
}

const LINK_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;

/** Throws NET_BAD_CONFIG unless `name` is a usable interface name (1–15 chars, no slashes or spaces). */
export function checkLinkName(name: string): void {
  if (!LINK_NAME.test(name)) throw netErrors.NET_BAD_CONFIG({ reason: `"${name}" is not a valid interface name (1-15 of A-Z a-z 0-9 _ . -)` });
}

/** The comment that tags every rule of this bridge. */
export function ruleTag(bridge: string): string {
  return `ferry:${bridge}`;
}

/** The rules a bridge wants (pure, so the NAT rule is testable without enabling it). */
export function bridgeRules(config: BridgeConfig): IptablesRule[] {
  const tag = ['-m', 'comment', '--comment', ruleTag(config.name)];
  const br = config.name;
  // Bridged frames cross FORWARD when br_netfilter is loaded; this keeps container↔container
  // traffic working on hosts whose FORWARD policy is DROP.
  const rules: IptablesRule[] = [{ table: 'filter', chain: 'FORWARD', position: 'insert', spec: ['-i', br, '-o', br, ...tag, '-j', 'ACCEPT'] }];
  if (config.outboundNat) rules.push(...natRules(config));
  return rules;
}

/** The rules only `outboundNat` adds. */
function natRules(config: BridgeConfig): IptablesRule[] {
  const tag = ['-m', 'comment', '--comment', ruleTag(config.name)];
  const br = config.name;
  return [
    { table: 'filter', chain: 'FORWARD', position: 'insert', spec: ['-i', br, '!', '-o', br, ...tag, '-j', 'ACCEPT'] },
    { table: 'filter', chain: 'FORWARD', position: 'insert', spec: ['-o', br, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', ...tag, '-j', 'ACCEPT'] },
    { table: 'nat', chain: 'POSTROUTING', position: 'append', spec: ['-s', config.subnet.cidr, '!', '-o', br, ...tag, '-j', 'MASQUERADE'] },
  ];
}

/** What `ip -d -j link show` reports about a link, or undefined when it does not exist. */
export async function linkInfo(name: string): Promise<{ kind: string | undefined; up: boolean; master: string | undefined } | undefined> {
  checkLinkName(name);
  try {
    const { stdout } = await runCommand('ip', ['-d', '-j', 'link', 'show', 'dev', name]);
    const [link] = JSON.parse(stdout) as Array<{ flags?: string[]; master?: string; linkinfo?: { info_kind?: string } }>;
    if (!link) return undefined;
    return { kind: link.linkinfo?.info_kind, up: (link.flags ?? []).includes('UP'), master: link.master };
  } catch (e) {
    const stderr = String((e as { details?: { stderr?: unknown } }).details?.stderr ?? '');
    if (/does not exist/i.test(stderr)) return undefined;
    throw e;
  }
}

/** Creates the bridge if missing, (re)sets its MAC, gateway address, state and rules; safe to repeat. */
export async function ensureBridge(config: BridgeConfig, log: (m: string) => void = () => undefined): Promise<void> {
  checkLinkName(config.name);
  const { name, subnet } = config;
  const existing = await linkInfo(name);
  if (existing && existing.kind !== 'bridge') {
    throw netErrors.NET_BAD_CONFIG({ reason: `${name} exists and is a ${existing.kind ?? 'plain'} link, not a bridge` });
  }
  const lines: string[] = [];
  if (!existing) {
    lines.push(`link add name ${name} type bridge`);
    log(`network: creating bridge ${name} (${subnet.gateway}/${subnet.prefixLength})`);
  }
  // A bridge takes the lowest port MAC unless one is set; a fixed MAC derived from the gateway keeps
  // the containers' permanent neighbour entry valid as ports come and go, and on every node.
  lines.push(
    `link set dev ${name} address ${macFromIp(subnet.gateway)}`,
    `addr replace ${subnet.gateway}/${config.gatewayOnly ? 32 : subnet.prefixLength} dev ${name}`,
    `link set dev ${name} up`,
  );
  await ipBatch(lines);
  await writeSysctl(`/proc/sys/net/ipv4/conf/${name}/forwarding`, '1');
  if (config.outboundNat) {
    // Replies to masqueraded traffic come in on the uplink, so routing must be on for every link.
    await writeSysctl('/proc/sys/net/ipv4/ip_forward', '1');
    log('network: outbound NAT on; net.ipv4.ip_forward=1 (left on at destroy: other software may rely on it)');
  } else {
    // Switching NAT off later must take its rules away too.
    for (const rule of natRules(config)) await deleteRule(rule);
  }
  for (const rule of bridgeRules(config)) await ensureRule(rule);
}

/** Removes the bridge (if present) and every iptables rule tagged with its name. */
export async function destroyBridge(name: string, log: (m: string) => void = () => undefined): Promise<void> {
  checkLinkName(name);
  if (await deleteLink(name)) log(`network: removed bridge ${name}`);
  const tag = ruleTag(name);
  for (const [table, chain] of [['filter', 'FORWARD'], ['filter', 'INPUT'], ['nat', 'POSTROUTING'], ['raw', 'PREROUTING']] as const) {
    for (const spec of await taggedRules(table, chain, tag)) {
      await runCommand('iptables', ['-w', '5', '-t', table, '-D', chain, ...spec]);
    }
  }
}

/** Rules in `table`/`chain` carrying exactly `tag`, as argument lists after the chain name. */
export async function taggedRules(table: string, chain: string, tag: string): Promise<string[][]> {
  const { stdout } = await runCommand('iptables', ['-w', '5', '-t', table, '-S', chain]);
  const found: string[][] = [];
  for (const line of stdout.split('\n')) {
    const tokens = splitRuleLine(line);
    if (tokens[0] !== '-A' || tokens[1] !== chain) continue;
    const at = tokens.indexOf('--comment');
    if (at >= 0 && tokens[at + 1] === tag) found.push(tokens.slice(2));
  }
  return found;
}

/** Splits one line of `iptables -S` into arguments (double quotes group, backslash escapes). */
export function splitRuleLine(line: string): string[] {
  const tokens: string[] = [];
  for (const m of line.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)) {
    tokens.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : (m[2] as string));
  }
  return tokens;
}

/** Adds an iptables rule unless it is there already. */
export async function ensureRule(rule: IptablesRule): Promise<void> {
  const base = ['-w', '5', '-t', rule.table];
  if (await ruleExists(rule)) return;
  await runCommand('iptables', [...base, rule.position === 'insert' ? '-I' : '-A', rule.chain, ...rule.spec]);
}

async function deleteRule(rule: IptablesRule): Promise<void> {
  // A rule added twice (e.g. by two agents racing) needs two deletes.
  while (await ruleExists(rule)) await runCommand('iptables', ['-w', '5', '-t', rule.table, '-D', rule.chain, ...rule.spec]);
}

async function ruleExists(rule: IptablesRule): Promise<boolean> {
  try {
    await runCommand('iptables', ['-w', '5', '-t', rule.table, '-C', rule.chain, ...rule.spec]);
    return true;
  } catch (e) {
    // -C exits 1 for "no such rule"; anything else (missing binary, bad table) is a real failure.
    if ((e as { details?: { exitCode?: unknown } }).details?.exitCode === 1) return false;
    throw e;
  }
}

/** Writes a sysctl file, as NET_SETUP_FAILED when it cannot. */
export async function writeSysctl(path: string, value: string): Promise<void> {
  try {
    await writeFile(path, value);
  } catch (e) {
    throw netErrors.NET_SETUP_FAILED({ command: `write ${value} to ${path}`, stderr: (e as Error).message }, e);
  }
}

/** Puts a host veth on the bridge and brings it up (the end of a `mode=down` start). */
export async function attachToBridge(veth: string, bridge: string): Promise<void> {
  checkLinkName(veth);
  checkLinkName(bridge);
  await runCommand('ip', ['link', 'set', 'dev', veth, 'master', bridge, 'up']);
}

/** Deletes a link if it exists; a link that vanished meanwhile (its namespace died) is fine. */
export async function deleteLink(name: string): Promise<boolean> {
  if (!(await linkInfo(name))) return false;
  try {
    await runCommand('ip', ['link', 'del', 'dev', name]);
    return true;
  } catch (e) {
    if (/cannot find device|does not exist/i.test(String((e as { details?: { stderr?: unknown } }).details?.stderr ?? ''))) return false;
    throw e;
  }
}
