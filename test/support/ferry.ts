/**
 * A real single-node Ferry for integration tests: `ferry up` in a temporary home with a unique id
 * prefix, cgroup parent, bridge and subnet, and a teardown that removes everything even when the
 * test failed (containers, mounts, cgroups, bridge, processes, files).
 */
import { spawn, execFileSync } from 'node:child_process';
import { chmod, cp, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { FerryClient } from '../../src/client/index.ts';
import { SCRATCH_OWNER_FILE } from '../../src/agent/migrate.ts';
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ensurePrerequisites } from './prereq.ts';

/** Repository root. */
export const ROOT = resolve(import.meta.dirname, '../..');
const FERRY = join(ROOT, 'bin/ferry');

/** Result of one CLI call. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** One agent of a test Ferry: the names it uses on this machine. */
export interface AgentInfo {
  readonly node: string;
  readonly bridge: string;
  readonly subnet: string;
  readonly cgroupParent: string;
  readonly runcRoot: string;
}

/** A Ferry started for a test. */
export interface TestFerry {
  readonly id: string;
  readonly home: string;
  readonly node: string;
  readonly bridge: string;
  readonly subnet: string;
  readonly runcRoot: string;
  readonly cgroupParent: string;
  readonly client: FerryClient;
  /** Runs `ferry --home <home> …args`. */
  cli(args: string[], o?: { input?: string; env?: Record<string, string> }): Promise<CliResult>;
  /** Like cli, but throws unless the exit code is 0; returns stdout. */
  ok(args: string[]): Promise<string>;
  /** Runs `ferry -o json …` and parses stdout. */
  json<T = unknown>(args: string[]): Promise<T>;
  /** `runc list` ids under this agent's root. */
  runcIds(): string[];
  /** Every agent of this Ferry (the first is the one `ferry up` started). */
  readonly agents: AgentInfo[];
  /**
   * Starts one more agent (another simulated host on this machine) and waits until it is Ready.
   * `o.args` are added to its arguments; with `--join` among them it names its manager itself.
   */
  addAgent(env?: Record<string, string>, o?: { args?: string[] }): Promise<AgentInfo>;
  /** The pid of agent `node`'s process, or undefined when it is not running. */
  pidOf(node: string): number | undefined;
  /** Starts agent `node` again with the arguments it had (after it died). */
  restartAgentOf(node: string, env?: Record<string, string>): Promise<void>;
  /** The pid of the running agent, or undefined. */
  agentPid(): number | undefined;
  /** Starts the agent again (after it died), with the same arguments `ferry up` gave it. */
  restartAgent(env?: Record<string, string>): Promise<void>;
  /** The manager's pid, or undefined when it is not running. */
  managerPid(): number | undefined;
  /** Starts the manager again (after it died) on the same address, so the agents find it again. */
  restartManager(): Promise<void>;
  /** Stops and removes everything; returns what had to be removed by force (should be nothing). */
  teardown(): Promise<string[]>;
}

/** `ok` (stdout, or a throw naming the exit code and both streams) and `json` (`-o json`, parsed) over `cli`. */
export function cliHelpers(cli: (args: string[]) => Promise<CliResult>): { ok(args: string[]): Promise<string>; json<T = unknown>(args: string[]): Promise<T> } {
  const ok = async (args: string[]): Promise<string> => {
    const r = await cli(args);
    if (r.code !== 0) throw new Error(`ferry ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    return r.stdout;
  };
  return { ok, json: async <T>(args: string[]) => JSON.parse(await ok(['-o', 'json', ...args])) as T };
}

/** Runs the ferry CLI. */
export function runCli(home: string, args: string[], o: { input?: string; env?: Record<string, string> } = {}): Promise<CliResult> {
  return new Promise((res, rej) => {
    const p = spawn(FERRY, ['--home', home, ...args], { env: { ...process.env, FERRY_API: '', FERRY_TOKEN: '', ...o.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    p.on('error', rej);
    p.on('close', (code) => res({ code: code ?? 1, stdout, stderr }));
    p.stdin.end(o.input ?? '');
  });
}

/** Starts a fresh single-node Ferry. */
export async function startFerry(o: { extraAgentArgs?: string[]; env?: Record<string, string> } = {}): Promise<TestFerry> {
  const id = `ft${randomBytes(3).toString('hex')}`;
  const home = await mkdtemp(join(tmpdir(), `ferry-${id}-`));
  // Rootfs parents must be traversable by the user namespace's root (host uid 100000).
  await chmod(home, 0o755);
  const node = `node-${id}`;
  const bridge = `fb${id.slice(2)}`;
  const subnet = `10.213.${1 + Math.floor(Math.random() * 250)}.0/24`;
  const cgroupParent = `ferry-${id}`;
  const runcRoot = join(home, 'agents', node, 'runc');
  const agentArgs = [`--id-prefix=${id}-`, `--cgroup-parent=${cgroupParent}`, `--bridge=${bridge}`, `--subnet=${subnet}`, '--stop-timeout-ms=3000', '--rescan-ms=1000', ...(o.extraAgentArgs ?? [])];
  const cli = (args: string[], co?: { input?: string; env?: Record<string, string> }): Promise<CliResult> => runCli(home, args, co);
  const agents: AgentInfo[] = [{ node, bridge, subnet, cgroupParent, runcRoot }];
  const agentArgsOf = new Map<string, string[]>([[node, agentArgs]]);
  // Starts `ferry agent` for node `n` in the background and waits until it is Ready with its images.
  const spawnAgent = async (n: string, args: string[], env: Record<string, string>): Promise<void> => {
    const cfg = JSON.parse(await readFile(join(home, 'ferry.json'), 'utf8')) as { api: string; token: string };
    const log = openSync(join(home, 'logs', `agent-${n}.log`), 'a');
    const manager = args.includes('--join') ? [] : ['--manager', cfg.api];
    const child = spawn(FERRY, ['--home', home, 'agent', ...manager, '--name', n, ...args], {
      detached: true, stdio: ['ignore', log, log], env: { ...process.env, FERRY_TOKEN: cfg.token, ...env },
    });
    child.unref();
    closeSync(log);
    const t0 = Date.now();
    while (Date.now() - t0 < 60_000) {
      const nv = (await f.client.nodes.list()).find((x) => x.node.metadata.name === n);
      const imgs = await f.client.images.list();
      if (f.pidOf(n) === child.pid && nv?.state === 'Ready' && imgs.some((im) => im.nodes.includes(n))) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`agent ${n} did not become ready`);
  };
  const f: TestFerry = {
    id, home, node, bridge, subnet, runcRoot, cgroupParent, agents,
    client: undefined as unknown as FerryClient,
    cli,
    ...cliHelpers(cli),
    runcIds() {
      return runcList(runcRoot);
    },
    teardown: () => teardownFerry(f),
    pidOf(n: string) {
      try {
        const r = JSON.parse(readFileSync(join(home, 'run', `agent-${n}.json`), 'utf8')) as { pid: number };
        return isLive(r.pid) ? r.pid : undefined;
      } catch {
        return undefined;
      }
    },
    agentPid() {
      return f.pidOf(node);
    },
    async restartAgent(env = {}) {
      await spawnAgent(node, agentArgs, env);
    },
    managerPid() {
      try {
        const r = JSON.parse(readFileSync(join(home, 'run', 'manager.json'), 'utf8')) as { pid: number };
        return isLive(r.pid) ? r.pid : undefined;
      } catch {
        return undefined;
      }
    },
    async restartManager() {
      const cfg = JSON.parse(await readFile(join(home, 'ferry.json'), 'utf8')) as { api: string; token: string };
      const url = new URL(cfg.api);
      const log = openSync(join(home, 'logs', 'manager.log'), 'a');
      const child = spawn(FERRY, ['--home', home, 'manager', '--host', url.hostname, '--port', url.port], { detached: true, stdio: ['ignore', log, log], env: { ...process.env, FERRY_TOKEN: cfg.token } });
      child.unref();
      closeSync(log);
      for (const t0 = Date.now(); Date.now() - t0 < 30_000;) {
        if (f.managerPid() === child.pid && (await f.client.nodes.list().then(() => true, () => false))) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error('the manager did not come back');
    },
    async restartAgentOf(n: string, env = {}) {
      const args = agentArgsOf.get(n);
      if (!args) throw new Error(`no agent ${n}`);
      await spawnAgent(n, args, env);
    },
    async addAgent(env = {}, ao = {}) {
      const i = agents.length;
      const a: AgentInfo = {
        node: `node${i}-${id}`, bridge: `fb${id.slice(2)}${i}`, subnet: `10.213.${(Number.parseInt(subnet.split('.')[2]!, 10) + i) % 250 + 1}.0/24`,
        cgroupParent: `ferry-${id}-${i}`, runcRoot: join(home, 'agents', `node${i}-${id}`, 'runc'),
      };
      agents.push(a);
      const args = [`--id-prefix=${id}${i}-`, `--cgroup-parent=${a.cgroupParent}`, `--bridge=${a.bridge}`, `--subnet=${a.subnet}`, '--stop-timeout-ms=3000', '--rescan-ms=1000', ...(ao.args ?? [])];
      agentArgsOf.set(a.node, args);
      await spawnAgent(a.node, args, env);
      return a;
    },
  };
  const up = await cli(['up', '--port', '0', '--no-lb', '--node-name', node, ...agentArgs.map((a) => `--agent-arg=${a}`)], { env: o.env ?? {} });
  if (up.code !== 0) {
    await teardownFerry(f);
    throw new Error(`ferry up failed (${up.code}): ${up.stderr}\n${await readFile(join(home, 'logs', `agent-${node}.log`), 'utf8').catch(() => '')}`);
  }
  const cfg = JSON.parse(await readFile(join(home, 'ferry.json'), 'utf8')) as { api: string; token: string };
  (f as { client: FerryClient }).client = new FerryClient({ url: cfg.api, token: cfg.token });
  return f;
}

/**
 * `runc list` ids under `root`. runc itself fails when a container's state dir vanishes while it
 * lists (an agent deleting a container at that moment), so a failed listing is retried.
 */
export function runcList(root: string): string[] {
  for (let attempt = 0; ; attempt++) {
    if (!existsSync(root)) return [];
    try {
      const out = execFileSync('runc', ['--root', root, 'list', '-f', 'json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      return ((JSON.parse(out || 'null') ?? []) as { id: string }[]).map((c) => c.id);
    } catch (e) {
      if (attempt >= 20) throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
    }
  }
}

/** True when `pid` exists and is not a zombie (this sandbox's init reaps orphans late). */
export function isLive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

function pidsOf(home: string): number[] {
  const dir = join(home, 'run');
  if (!existsSync(dir)) return [];
  return readdirSync(dir).map((n) => { try { return (JSON.parse(readFileSync(join(dir, n), 'utf8')) as { pid: number }).pid; } catch { return 0; } }).filter((p) => p > 0);
}

/**
 * Removes the migration scratch directories (/dev/shm/ferry-*, see defaultScratchDir) of agents whose
 * data directory is under `home`: the tmpfs half of their data, gone with it. An agent removes its own
 * at a clean stop; one killed (a crash test) cannot.
 */
export async function removeScratchDirs(home: string): Promise<void> {
  for (const n of await readdir('/dev/shm').catch(() => [] as string[])) {
    if (!n.startsWith('ferry-')) continue;
    const owner = await readFile(join('/dev/shm', n, SCRATCH_OWNER_FILE), 'utf8').catch(() => '');
    if (owner.startsWith(`${home}/`)) await rm(join('/dev/shm', n), { recursive: true, force: true });
  }
}

/** `ferry down`, then removes by force whatever is still there, so a failed test leaves nothing behind. */
export async function teardownFerry(f: Pick<TestFerry, 'home' | 'runcRoot' | 'cgroupParent' | 'bridge' | 'id'> & { agents?: AgentInfo[] }): Promise<string[]> {
  const agents = f.agents ?? [{ node: '', bridge: f.bridge, subnet: '', cgroupParent: f.cgroupParent, runcRoot: f.runcRoot }];
  const leftovers: string[] = [];
  const pids = pidsOf(f.home);
  await runCli(f.home, ['down']).catch(() => undefined);
  for (const pid of pids) {
    if (!isLive(pid)) continue;
    try { process.kill(pid, 'SIGKILL'); leftovers.push(`process ${pid}`); } catch { /* gone, as it should be */ }
  }
  for (const a of agents) {
    for (const id of runcList(a.runcRoot)) {
      leftovers.push(`runc container ${id}`);
      try { execFileSync('runc', ['--root', a.runcRoot, 'delete', '--force', id], { stdio: 'ignore' }); } catch { /* best effort */ }
    }
  }
  // Shims of this run (their argv names the runc root).
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmd.includes(f.home) && Number(pid) !== process.pid) { process.kill(Number(pid), 'SIGKILL'); leftovers.push(`process ${pid}: ${cmd.split('\0')[0]}`); }
    } catch { /* raced with exit */ }
  }
  const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '').filter((m) => m.startsWith(f.home)).reverse();
  for (const m of mounts) {
    leftovers.push(`mount ${m}`);
    try { execFileSync('umount', ['-l', m], { stdio: 'ignore' }); } catch { /* best effort */ }
  }
  for (const ctl of await readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
    for (const a of agents) {
      const dir = join('/sys/fs/cgroup', ctl, a.cgroupParent);
      if (!existsSync(dir)) continue;
      const subs = readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory());
      if (subs.length > 0) leftovers.push(`cgroup ${dir}/{${subs.map((d) => d.name).join(',')}}`);
      for (const d of subs) { try { rmdirSync(join(dir, d.name)); } catch { /* busy */ } }
      try { rmdirSync(dir); } catch { /* busy */ }
    }
  }
  const links = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' });
  for (const a of agents) {
    if (!links.includes(` ${a.bridge}:`)) continue;
    leftovers.push(`bridge ${a.bridge}`);
    try { execFileSync('ip', ['link', 'del', a.bridge], { stdio: 'ignore' }); } catch { /* best effort */ }
  }
  // Firewall rules the agents added for their bridges (commented "ferry:<bridge>").
  for (const table of ['filter', 'nat']) {
    let rules: string[] = [];
    try { rules = execFileSync('iptables', ['-t', table, '-S'], { encoding: 'utf8' }).split('\n'); } catch { /* no iptables */ }
    for (const a of agents) {
      for (const r of rules.filter((l) => l.startsWith('-A ') && l.includes(`"ferry:${a.bridge}"`))) {
        leftovers.push(`iptables ${table}: ${r}`);
        // The rule as printed, with -A turned into -D (the comment's quotes dropped for argv).
        const args = r.replace(/^-A /, '-D ').replace(/"/g, '').split(' ');
        try { execFileSync('iptables', ['-t', table, ...args], { stdio: 'ignore' }); } catch { /* best effort */ }
      }
    }
  }
  // Keep the daemons' logs for a post-mortem (test-artifacts/ is git-ignored).
  await cp(join(f.home, 'logs'), join(ROOT, 'test-artifacts', f.id), { recursive: true }).catch(() => undefined);
  await removeScratchDirs(f.home);
  await rm(f.home, { recursive: true, force: true });
  return leftovers;
}

/**
 * Registers before/after hooks around a `startFerry()` (call inside a `describe`): the prerequisites
 * are checked first, and the teardown fails the suite when it had to remove anything. The holder's
 * `f` is set once `before` has run.
 */
export function useFerry(tools: string[]): { f: TestFerry } {
  const holder = {} as { f: TestFerry };
  before(async () => {
    ensurePrerequisites(tools);
    holder.f = await startFerry();
  });
  after(async () => {
    if (!holder.f) return;
    const left = await teardownFerry(holder.f);
    assert.deepEqual(left, [], `teardown found leftovers: ${left.join('; ')}`);
  });
  return holder;
}
