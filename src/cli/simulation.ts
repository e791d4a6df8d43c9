/**
 * `ferry up --nodes N`: N simulated hosts on this machine. Each host is a network namespace joined
 * to an underlay bridge Ferry creates in the root namespace, in a private 10.215.X.0/24 range that
 * overlaps nothing else here. Planning is pure; creating and destroying drive `ip` and `iptables`.
 *
 *   root ns: bridge fu<id> 10.215.X.1 (manager) ── veth fu<id>h<i> ══ eth0 10.215.X.(10+i) in netns ferry-<id>-h<i> (agent i)
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, readdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { defineErrors } from '../errors/index.ts';

/** Errors of the simulation. */
export const simErrors = defineErrors({
  BAD_FLAG: { status: 400, message: '{flag} {reason}' },
  SIM_NO_RANGE: { status: 503, message: 'no free 10.215.X.0/24 range for the simulated underlay: every one overlaps a route or address of this machine' },
  SIM_SETUP_FAILED: { status: 500, message: 'could not create the simulated hosts: {command}: {stderr}' },
  SIM_TEARDOWN_FAILED: { status: 500, message: 'could not remove all of simulation {id}: {left}' },
});

/** Most simulated hosts one `ferry up` makes (each runs a full agent). */
export const MAX_SIM_NODES = 16;

/** First two octets of the underlay ranges Ferry owns. */
const UNDERLAY_PREFIX = '10.215';

/** One simulated host. */
export interface SimHost {
  /** 1-based. */
  readonly index: number;
  /** Network namespace (`ip netns` name; its file is /run/netns/<netns>). */
  readonly netns: string;
  /** Root-namespace end of the host's veth (on the bridge); the other end is `eth0` in the netns. */
  readonly veth: string;
  /** The host's address on the underlay. */
  readonly underlayIp: string;
  /** Cgroup parent of the host's containers. */
  readonly cgroupParent: string;
  /** Prefix of the host's container runtime ids. */
  readonly idPrefix: string;
}

/** Everything one simulation is made of (saved as sim.json so teardown finds it). */
export interface SimPlan {
  readonly id: string;
  /** Underlay bridge in the root namespace. */
  readonly bridge: string;
  /** Underlay subnet, `10.215.X.0/24`. */
  readonly subnet: string;
  /** The bridge's address (the manager listens there). */
  readonly gateway: string;
  readonly hosts: readonly SimHost[];
}

/** A parsed IPv4 CIDR: network address as an unsigned int and prefix length. */
export interface Cidr {
  readonly base: number;
  readonly prefix: number;
}

/** A fresh simulation id: 6 random hex characters. */
export function newSimId(): string {
  return randomBytes(3).toString('hex');
}

/** Parses `a.b.c.d/n` (address bits past the prefix are masked off); undefined when it is not one. */
export function parseCidr(cidr: string): Cidr | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr.trim());
  if (!m) return undefined;
  const octets = m.slice(1, 5).map(Number);
  const prefix = Number(m[5]);
  if (octets.some((o) => o > 255) || prefix > 32) return undefined;
  const ip = octets.reduce((a, o) => a * 256 + o, 0);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return { base: (ip & mask) >>> 0, prefix };
}

/** `a.b.c.d/n` of a parsed CIDR. */
export function formatCidr(c: Cidr): string {
  return `${[24, 16, 8, 0].map((s) => (c.base >>> s) & 255).join('.')}/${c.prefix}`;
}

/** True when two CIDRs share any address. */
export function overlaps(a: Cidr, b: Cidr): boolean {
  const p = Math.min(a.prefix, b.prefix);
  const mask = p === 0 ? 0 : (0xffffffff << (32 - p)) >>> 0;
  return ((a.base & mask) >>> 0) === ((b.base & mask) >>> 0);
}

/** Validates `--nodes`: a whole number 1..MAX_SIM_NODES. */
export function checkNodeCount(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || n < 1 || n > MAX_SIM_NODES) {
    throw simErrors.BAD_FLAG({ flag: '--nodes', reason: `needs a whole number from 1 to ${MAX_SIM_NODES}, not "${v}"` });
  }
  return n;
}

/** Validates `--cluster-subnet`: an IPv4 CIDR with a prefix of /8../28 given as its network address. */
export function checkClusterSubnet(v: string): string {
  const c = parseCidr(v);
  if (!c || c.prefix < 8 || c.prefix > 28 || formatCidr(c) !== v.trim()) {
    throw simErrors.BAD_FLAG({ flag: '--cluster-subnet', reason: `needs an IPv4 CIDR such as 10.216.0.0/16 (a network address, prefix /8 to /28), not "${v}"` });
  }
  const underlay = parseCidr(`${UNDERLAY_PREFIX}.0.0/16`)!;
  if (overlaps(c, underlay)) throw simErrors.BAD_FLAG({ flag: '--cluster-subnet', reason: `must not overlap the simulated underlay ${UNDERLAY_PREFIX}.0.0/16, but "${v}" does` });
  return v.trim();
}

/** Validates `--vni`: a VXLAN network id, 1..16777215. */
export function checkVni(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || n < 1 || n > 0xffffff) throw simErrors.BAD_FLAG({ flag: '--vni', reason: `needs a whole number from 1 to 16777215, not "${v}"` });
  return n;
}

/** The third octets X (1..254) whose 10.215.X.0/24 overlaps none of `used` (CIDRs; unparsable ones are ignored). */
export function freeUnderlayOctets(used: readonly string[]): number[] {
  const taken = used.map(parseCidr).filter((c): c is Cidr => c !== undefined);
  const out: number[] = [];
  for (let x = 1; x <= 254; x++) {
    const mine = parseCidr(`${UNDERLAY_PREFIX}.${x}.0/24`)!;
    if (!taken.some((t) => overlaps(t, mine))) out.push(x);
  }
  return out;
}

/** Picks one free octet at random (so concurrent runs rarely race for the same one); undefined when none is free. */
export function chooseUnderlayOctet(used: readonly string[], random: () => number = Math.random): number | undefined {
  const free = freeUnderlayOctets(used);
  return free.length === 0 ? undefined : free[Math.floor(random() * free.length)];
}

/** The names and addresses of a simulation of `nodes` hosts with id `id` on 10.215.`octet`.0/24. */
export function planSimulation(id: string, nodes: number, octet: number): SimPlan {
  if (!/^[0-9a-f]{4,6}$/.test(id)) throw simErrors.BAD_FLAG({ flag: 'simulation id', reason: `must be 4 to 6 hex characters, not "${id}"` });
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > MAX_SIM_NODES) throw simErrors.BAD_FLAG({ flag: '--nodes', reason: `must be 1 to ${MAX_SIM_NODES}, not ${nodes}` });
  if (!Number.isInteger(octet) || octet < 1 || octet > 254) throw simErrors.BAD_FLAG({ flag: 'underlay octet', reason: `must be 1 to 254, not ${octet}` });
  const net = `${UNDERLAY_PREFIX}.${octet}`;
  return {
    id, bridge: `fu${id}`, subnet: `${net}.0/24`, gateway: `${net}.1`,
    hosts: Array.from({ length: nodes }, (_, k) => {
      const i = k + 1;
      return { index: i, netns: `ferry-${id}-h${i}`, veth: `fu${id}h${i}`, underlayIp: `${net}.${10 + i}`, cgroupParent: `ferry-${id}-h${i}`, idPrefix: `${id}h${i}-` };
    }),
  };
}

/** The `ip` commands that build the bridge (root namespace). */
export function bridgeCommands(p: SimPlan): string[] {
  return [`link add ${p.bridge} type bridge`, `addr add ${p.gateway}/24 dev ${p.bridge}`, `link set ${p.bridge} up`];
}

/** The `ip` commands that build one host: its netns and veth on the bridge (root), then its address (inside; `ip -n <netns>`). */
export function hostCommands(p: SimPlan, h: SimHost): { root: string[]; inside: string[] } {
  return {
    root: [`netns add ${h.netns}`, `link add ${h.veth} type veth peer name eth0 netns ${h.netns}`, `link set ${h.veth} master ${p.bridge} up`],
    inside: [`addr add ${h.underlayIp}/24 dev eth0`, 'link set lo up', 'link set eth0 up'],
  };
}

/** The iptables rule that lets underlay frames cross FORWARD on hosts that load br_netfilter with a DROP policy. */
export function forwardRule(p: SimPlan): string[] {
  return ['FORWARD', '-i', p.bridge, '-o', p.bridge, '-m', 'comment', '--comment', `ferry:${p.bridge}`, '-j', 'ACCEPT'];
}

// ---- I/O at the edge: ip, iptables, sim.json ----

function run(cmd: string, args: readonly string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } }, (err, stdout, stderr) => {
      if (err) reject(simErrors.SIM_SETUP_FAILED({ command: [cmd, ...args].join(' ') + (input ? ` [${input.trim().split('\n').join('; ')}]` : ''), stderr: stderr.trim() || err.message }, err));
      else resolve(stdout);
    });
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input ?? '');
  });
}

const ipBatch = (lines: readonly string[], netns?: string): Promise<string> => run('ip', [...(netns ? ['-n', netns] : []), '-batch', '-'], `${lines.join('\n')}\n`);

/** Every IPv4 range this machine already uses: routes of the main table (but the default route) and interface addresses. */
export async function usedRanges(): Promise<string[]> {
  const routes = JSON.parse(await run('ip', ['-4', '-j', 'route'])) as Array<{ dst?: string }>;
  const addrs = JSON.parse(await run('ip', ['-4', '-j', 'addr'])) as Array<{ addr_info?: Array<{ local?: string; prefixlen?: number }> }>;
  const out: string[] = [];
  for (const r of routes) if (r.dst && r.dst !== 'default') out.push(r.dst.includes('/') ? r.dst : `${r.dst}/32`);
  for (const a of addrs) for (const i of a.addr_info ?? []) if (i.local !== undefined) out.push(`${i.local}/${i.prefixlen ?? 32}`);
  return out;
}

/** Interfaces of the root namespace other than `except` that hold an address inside `subnet`. */
async function othersIn(subnet: string, except: string): Promise<string[]> {
  const s = parseCidr(subnet)!;
  const addrs = JSON.parse(await run('ip', ['-4', '-j', 'addr'])) as Array<{ ifname: string; addr_info?: Array<{ local?: string }> }>;
  return addrs.filter((a) => a.ifname !== except && (a.addr_info ?? []).some((i) => i.local && overlaps(parseCidr(`${i.local}/32`)!, s))).map((a) => a.ifname);
}

const linkExists = (name: string): boolean => existsSync(`/sys/class/net/${name}`);
const netnsExists = (name: string): boolean => existsSync(`/run/netns/${name}`);

/** Reads a saved simulation; undefined when there is none. */
export async function readSimulation(file: string): Promise<SimPlan | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as SimPlan;
  } catch {
    return undefined;
  }
}

/**
 * Plans and creates a simulation of `nodes` hosts, saving the plan to `file` before the first change
 * so a crashed run can still be cleaned up. On failure it removes what it made, then throws.
 */
export async function createSimulation(nodes: number, file: string, log: (m: string) => void = () => undefined): Promise<SimPlan> {
  for (let attempt = 0; ; attempt++) {
    let id = newSimId();
    while (linkExists(`fu${id}`) || netnsExists(`ferry-${id}-h1`)) id = newSimId();
    const octet = chooseUnderlayOctet(await usedRanges());
    if (octet === undefined) throw simErrors.SIM_NO_RANGE();
    const plan = planSimulation(id, nodes, octet);
    await writeFile(file, JSON.stringify(plan, null, 2));
    try {
      await ipBatch(bridgeCommands(plan));
      // Another run may have picked the same range between our look and our claim: the later one moves on.
      const clash = await othersIn(plan.subnet, plan.bridge);
      if (clash.length > 0) {
        await destroySimulation(plan, file);
        if (attempt >= 5) throw simErrors.SIM_NO_RANGE();
        log(`underlay ${plan.subnet} was taken meanwhile (${clash.join(', ')}); trying another`);
        continue;
      }
      await run('iptables', ['-I', ...forwardRule(plan)]).catch(() => undefined); // no iptables: no rule needed
      log(`underlay bridge ${plan.bridge} ${plan.gateway}/24`);
      await ipBatch(plan.hosts.flatMap((h) => hostCommands(plan, h).root));
      for (const h of plan.hosts) await ipBatch(hostCommands(plan, h).inside, h.netns);
      for (const h of plan.hosts) log(`host ${h.index}: netns ${h.netns}, ${h.underlayIp}`);
      return plan;
    } catch (e) {
      await destroySimulation(plan, file).catch(() => undefined);
      throw e;
    }
  }
}

async function waitGone(names: readonly string[], ms: number): Promise<void> {
  for (const t0 = Date.now(); names.some(linkExists) && Date.now() - t0 < ms;) await new Promise((r) => setTimeout(r, 50));
}

/**
 * Removes everything of `plan` that still exists (netns, veths, bridge, its iptables rule, empty cgroup
 * parents) and then `file`; safe to repeat and on half-made simulations. Throws SIM_TEARDOWN_FAILED
 * naming what is left (keeping `file`, so a retry finds it).
 */
export async function destroySimulation(plan: SimPlan, file?: string): Promise<void> {
  const left: string[] = [];
  for (const h of plan.hosts) {
    if (netnsExists(h.netns)) await run('ip', ['netns', 'del', h.netns]).catch((e: Error) => left.push(`netns ${h.netns} (${e.message})`));
  }
  // A veth goes when its netns goes, asynchronously; one still held by a process there is deleted from here.
  const veths = plan.hosts.map((h) => h.veth);
  await waitGone(veths, 5_000);
  for (const v of veths.filter(linkExists)) await run('ip', ['link', 'del', v]).catch(() => undefined);
  await waitGone(veths, 2_000);
  left.push(...veths.filter(linkExists).map((v) => `veth ${v}`));
  for (let i = 0; i < 10; i++) if (!(await run('iptables', ['-D', ...forwardRule(plan)]).then(() => true, () => false))) break;
  if (linkExists(plan.bridge)) await run('ip', ['link', 'del', plan.bridge]).catch((e: Error) => left.push(`bridge ${plan.bridge} (${e.message})`));
  const hierarchies = await readdir('/sys/fs/cgroup').catch(() => [] as string[]);
  for (const h of plan.hosts) {
    for (const dir of ['', ...hierarchies].map((x) => join('/sys/fs/cgroup', x, h.cgroupParent))) {
      if (existsSync(dir)) await rmdir(dir).catch(() => left.push(`cgroup ${dir}`));
    }
  }
  if (left.length > 0) throw simErrors.SIM_TEARDOWN_FAILED({ id: plan.id, left: left.join(', ') });
  if (file) await rm(file, { force: true });
}
