/**
 * A simulated multi-host Ferry for integration tests: `ferry up --nodes N` in a fresh temporary home —
 * each host a network namespace with its own underlay address, agent, data dir and cgroup parent —
 * and a teardown that removes everything of the run even when the test failed, reporting what it had
 * to remove by force (netns, veths, bridge, processes, cgroups, mounts, firewall rules). With
 * `managers: 3` the cluster runs three managers on a 3-member etcd (`ferry up --managers 3`) and the
 * fixture can kill the leader and kill/restart etcd members.
 */
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { chmod, cp, mkdtemp, rm } from 'node:fs/promises';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, readlinkSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { FerryClient } from '../../src/client/index.ts';
import { ROOT, cliHelpers, isLive, removeScratchDirs, runCli, runcList, type CliResult } from './ferry.ts';
import { ensurePrerequisites } from './prereq.ts';
import { until } from './wait.ts';
import { createInterface } from 'node:readline';

/** One simulated host of a test cluster. */
export interface SimHostInfo {
  /** 1-based host number (`ferry up` names the node `<node-name>-<index>`). */
  readonly index: number;
  readonly node: string;
  /** Network namespace name; its file is /run/netns/<netns>. */
  readonly netns: string;
  readonly underlayIp: string;
  readonly cgroupParent: string;
  readonly idPrefix: string;
  readonly dataDir: string;
  readonly runcRoot: string;
  /** The pid of this host's agent, or undefined when it is not running. */
  agentPid(): number | undefined;
  /** Starts this host's agent again (after it died) with the command line it had; waits until Ready with its images. */
  restartAgent(env?: Record<string, string>): Promise<void>;
  /** Stops this host's agent (SIGTERM; its containers keep running) and waits until it has exited. */
  stopAgent(): Promise<void>;
}

/** A cluster started for a test. */
export interface TestCluster {
  /** Simulation id (names: bridge fu<id>, netns ferry-<id>-h<i>, veths fu<id>h<i>). */
  readonly id: string;
  readonly home: string;
  /** Underlay bridge in the root namespace and its subnet. */
  readonly bridge: string;
  readonly subnet: string;
  /** The manager's API URL (on the underlay bridge address); with several managers their URLs separated by commas. */
  readonly managerUrl: string;
  readonly token: string;
  readonly client: FerryClient;
  readonly hosts: readonly SimHostInfo[];
  /** Runs `ferry --home <home> …args`. */
  cli(args: string[], o?: { input?: string; env?: Record<string, string> }): Promise<CliResult>;
  /** Like cli, but throws unless the exit code is 0; returns stdout. */
  ok(args: string[]): Promise<string>;
  /** Runs `ferry -o json …` and parses stdout. */
  json<T = unknown>(args: string[]): Promise<T>;
  /** Runs `argv` inside host `hostIndex`'s network namespace (`hosts[hostIndex]`, 0-based) via nsenter. */
  exec(hostIndex: number, argv: string[], o?: { input?: string; env?: Record<string, string>; timeoutMs?: number }): Promise<CliResult>;
  /** The manager's pid, or undefined when it is not running (a single-manager cluster). */
  managerPid(): number | undefined;
  /** The managers of the cluster with the pid each runs as now (undefined when not running). */
  managerPids(): { name: string; url: string; pid: number | undefined }[];
  /** The manager that leads now (asked of the running ones through GET /v1/manager/leader), or undefined when none does. */
  leader(): Promise<{ name: string; url: string } | undefined>;
  /** Kills the leading manager with SIGKILL and waits until it is gone; returns who it was and when it was killed (performance.now()). */
  killLeader(): Promise<{ name: string; url: string; pid: number; killedAt: number }>;
  /** Waits until a manager other than `not` leads; returns it and when it was first seen leading (performance.now()). */
  waitLeader(not?: string): Promise<{ name: string; url: string; seenAt: number }>;
  /** Starts again, with the command line each had, every manager of a multi-manager cluster that is not running. */
  reviveManagers(): Promise<void>;
  /** The etcd members (with `managers: 3`) with their pids now (undefined when not running). */
  etcdMembers(): { name: string; clientUrl: string; pid: number | undefined }[];
  /** Kills etcd member `name` with SIGKILL and waits until it is gone. */
  killEtcdMember(name: string): Promise<void>;
  /** Starts etcd member `name` again with the command line it had (and records its pid for `ferry down`); waits until it is healthy. */
  restartEtcdMember(name: string): Promise<void>;
  /** Starts the manager again (after it died) with the command line it had, on the same address, so the agents find it again. */
  restartManager(env?: Record<string, string>): Promise<void>;
  /** Stops the manager (SIGTERM) and waits until it has exited. */
  stopManager(): Promise<void>;
  /** `ferry down`, then removes by force whatever is left; returns what that was (should be nothing). */
  teardown(): Promise<string[]>;
}

/** What `ferry -o json up --nodes N` prints. */
export interface UpJson {
  api: string;
  token: string;
  managers: { name?: string; url: string; pid: number }[];
  etcd?: { name: string; pid: number; clientUrl: string; peerUrl: string; dataDir: string }[];
  simulation: { id: string; bridge: string; subnet: string; gateway: string };
  nodes: { name: string; netns: string; underlayIp: string; cgroupParent: string; idPrefix: string; dataDir: string }[];
}

function runFilePid(file: string): number | undefined {
  try {
    const pid = (JSON.parse(readFileSync(file, 'utf8')) as { pid: number }).pid;
    return isLive(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** The command line of live process `pid` (empty when it is gone). */
function cmdlineOf(pid: number | undefined): string[] {
  try { return pid ? readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((x) => x !== '') : []; } catch { return []; }
}

/** SIGTERMs `pid` (when it runs) and waits until it has exited. */
async function stopProcess(pid: number | undefined, what: string): Promise<void> {
  if (pid === undefined) return;
  try { process.kill(pid, 'SIGTERM'); } catch { return; }
  await until(`${what} (pid ${pid}) to exit`, () => (isLive(pid) ? undefined : true), 30_000);
}

/** Runs `argv` in network namespace `netns` (only that namespace; mounts stay the host's). */
export function execInNetns(netns: string, argv: string[], o: { input?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((res, rej) => {
    const p = spawn('nsenter', [`--net=/run/netns/${netns}`, '--', ...argv], { env: { ...process.env, ...o.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => p.kill('SIGKILL'), o.timeoutMs ?? 30_000);
    p.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    p.on('error', (e) => { clearTimeout(timer); rej(e); });
    p.on('close', (code) => { clearTimeout(timer); res({ code: code ?? 1, stdout, stderr }); });
    p.stdin.on('error', () => undefined);
    p.stdin.end(o.input ?? '');
  });
}

/** Starts `ferry up --nodes <nodes>` in a fresh home (without the entry point unless `lb`); `upArgs` are added to the `up` command line. */
export async function startCluster(o: { nodes: number; managers?: number; env?: Record<string, string>; extraAgentArgs?: string[]; upArgs?: string[]; lb?: boolean }): Promise<TestCluster> {
  const tid = `fc${randomBytes(3).toString('hex')}`;
  const home = await mkdtemp(join(tmpdir(), `ferry-${tid}-`));
  // Rootfs parents must be traversable by the user namespace's root (host uid 100000).
  await chmod(home, 0o755);
  const agentArgs = ['--stop-timeout-ms=3000', '--rescan-ms=1000', ...(o.extraAgentArgs ?? [])];
  const r = await runCli(home, ['-o', 'json', 'up', '--nodes', String(o.nodes), '--port', '0', '--node-name', tid, ...agentArgs.map((a) => `--agent-arg=${a}`), ...(o.lb ? [] : ['--no-lb']), ...(o.managers !== undefined ? ['--managers', String(o.managers)] : []), ...(o.upArgs ?? [])], { env: o.env ?? {} });
  if (r.code !== 0) {
    let simId: string | undefined;
    try { simId = (JSON.parse(r.stderr) as { error: { details: { simulation?: string } } }).error.details.simulation; } catch { /* no id: the failure came before the simulation */ }
    const left = await teardownCluster({ home, tid, id: simId });
    throw new Error(`ferry up --nodes ${o.nodes} failed (${r.code}): ${r.stderr}${left.length > 0 ? `\nleftovers: ${left.join('; ')}` : ''}`);
  }
  const u = JSON.parse(r.stdout) as UpJson;
  const cli = (args: string[], co?: { input?: string; env?: Record<string, string> }): Promise<CliResult> => runCli(home, args, co);
  const hosts: SimHostInfo[] = u.nodes.map((n, k) => {
    const agentPid = (): number | undefined => runFilePid(join(home, 'run', `agent-${n.name}.json`));
    // The command line `ferry up` gave the agent, for a restart after it was killed.
    const argv = cmdlineOf(agentPid());
    return {
      index: k + 1, node: n.name, netns: n.netns, underlayIp: n.underlayIp, cgroupParent: n.cgroupParent, idPrefix: n.idPrefix, dataDir: n.dataDir,
      runcRoot: join(n.dataDir, 'runc'),
      agentPid,
      async restartAgent(env = {}) {
        if (argv.length === 0) throw new Error(`no command line recorded for the agent of ${n.name}`);
        const log = openSync(join(home, 'logs', `agent-${n.name}.log`), 'a');
        const child = spawn('nsenter', [`--net=/run/netns/${n.netns}`, '--', ...argv], {
          detached: true, stdio: ['ignore', log, log], env: { ...process.env, FERRY_TOKEN: u.token, ...env },
        });
        child.unref();
        closeSync(log);
        const client = new FerryClient({ url: u.api, token: u.token });
        await until(`the agent of ${n.name} to come back`, async () => {
          const [nv, imgs] = await Promise.all([client.nodes.get(n.name), client.images.list()]);
          return agentPid() === child.pid && nv.state === 'Ready' && imgs.some((i) => i.nodes.includes(n.name)) ? true : undefined;
        });
      },
      stopAgent: () => stopProcess(agentPid(), `the agent of ${n.name}`),
    };
  });
  const managerPid = (): number | undefined => runFilePid(join(home, 'run', 'manager.json'));
  // The manager's command line, its port (0 for `up`) pinned to the one it got: the agents know that one.
  const managerArgv = cmdlineOf(managerPid()).map((a, k, all) => (all[k - 1] === '--port' ? new URL(u.api).port : a));
  const c: TestCluster = {
    id: u.simulation.id, home, bridge: u.simulation.bridge, subnet: u.simulation.subnet, managerUrl: u.api, token: u.token,
    client: new FerryClient({ url: u.api, token: u.token }),
    hosts,
    cli,
    ...cliHelpers(cli),
    exec(hostIndex, argv, eo) {
      const h = hosts[hostIndex];
      if (!h) throw new Error(`no host ${hostIndex} (0..${hosts.length - 1})`);
      return execInNetns(h.netns, argv, eo);
    },
    managerPid,
    async restartManager(env = {}) {
      if (managerArgv.length === 0) throw new Error('no command line recorded for the manager');
      const log = openSync(join(home, 'logs', 'manager.log'), 'a');
      const child = spawn(managerArgv[0]!, managerArgv.slice(1), { detached: true, stdio: ['ignore', log, log], env: { ...process.env, FERRY_TOKEN: u.token, ...env } });
      child.unref();
      closeSync(log);
      await until('the manager to come back', async () => (managerPid() === child.pid && (await c.client.nodes.list()) ? true : undefined), 30_000);
    },
    stopManager: () => stopProcess(managerPid(), 'the manager'),
    ...haHelpers(home, u),
    teardown: () => teardownCluster({ home, tid, id: u.simulation.id }),
  };
  return c;
}

/** The helpers of a multi-manager cluster, as `haHelpers` returns them. */
export type HaHelpers = Pick<TestCluster, 'managerPids' | 'leader' | 'killLeader' | 'waitLeader' | 'reviveManagers' | 'etcdMembers' | 'killEtcdMember' | 'restartEtcdMember'>;

/** What leader status GET /v1/manager/leader gives. */
interface LeaderStatus { name: string; role: 'leader' | 'standby'; leader: { name: string; url: string } | null }

/**
 * The helpers of a multi-manager cluster (`ferry up --managers 3`): managers, the leader, etcd members.
 * `u` is what `ferry -o json up` printed (bench/failover uses these too).
 */
export function haHelpers(home: string, u: Pick<UpJson, 'token' | 'managers' | 'etcd'>): HaHelpers {
  const named = u.managers.filter((m): m is { name: string; url: string; pid: number } => m.name !== undefined);
  const managerRun = (name: string): string => join(home, 'run', `manager-${name}.json`);
  // Command lines as `ferry up` started them, each port pinned to the one it got (clients and agents know those).
  const managerArgv = new Map(named.map((m) => [m.name, cmdlineOf(m.pid).map((a, k, all) => (all[k - 1] === '--port' ? new URL(m.url).port : a))]));
  const etcdArgv = new Map((u.etcd ?? []).map((e) => [e.name, cmdlineOf(e.pid)]));
  const etcdRun = (name: string): string => join(home, 'run', `etcd-${name}.json`);
  const managerPids = (): ReturnType<TestCluster['managerPids']> => named.map((m) => ({ name: m.name, url: m.url, pid: runFilePid(managerRun(m.name)) }));
  const status = async (url: string): Promise<LeaderStatus | undefined> => {
    try {
      const r = await fetch(`${url}/v1/manager/leader`, { headers: { authorization: `Bearer ${u.token}` }, signal: AbortSignal.timeout(1000) });
      return r.ok ? ((await r.json()) as LeaderStatus) : undefined;
    } catch {
      return undefined;
    }
  };
  const leader = async (): Promise<{ name: string; url: string } | undefined> => {
    const live = managerPids().filter((m) => m.pid !== undefined);
    const seen = await Promise.all(live.map((m) => status(m.url)));
    const leading = live.filter((_, i) => seen[i]?.role === 'leader');
    assert.ok(leading.length <= 1, `two managers lead at once: ${leading.map((m) => m.name).join(', ')}`);
    return leading[0] ? { name: leading[0].name, url: leading[0].url } : undefined;
  };
  const spawnLogged = (argv: string[], logName: string, env: Record<string, string> = {}): number => {
    const log = openSync(join(home, 'logs', logName), 'a');
    const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', log, log], env: { ...process.env, ...env } });
    child.unref();
    closeSync(log);
    return child.pid!;
  };
  return {
    managerPids,
    leader,
    async killLeader() {
      const l = await until('a manager to lead', leader, 60_000);
      const pid = managerPids().find((m) => m.name === l.name)?.pid;
      assert.ok(pid, `the leader ${l.name} has a pid`);
      const killedAt = performance.now();
      process.kill(pid, 'SIGKILL');
      await until(`manager ${l.name} (pid ${pid}) to be gone`, () => (isLive(pid) ? undefined : true), 10_000);
      return { ...l, pid, killedAt };
    },
    async waitLeader(not) {
      const l = await until(`a manager other than ${not ?? '(none)'} to lead`, async () => {
        const x = await leader();
        return x && x.name !== not ? x : undefined;
      }, 60_000);
      return { ...l, seenAt: performance.now() };
    },
    async reviveManagers() {
      for (const m of managerPids().filter((x) => x.pid === undefined)) {
        const argv = managerArgv.get(m.name) ?? [];
        if (argv.length === 0) throw new Error(`no command line recorded for manager ${m.name}`);
        const pid = spawnLogged(argv, `manager-${m.name}.log`, { FERRY_TOKEN: u.token });
        await until(`manager ${m.name} to come back`, async () => (runFilePid(managerRun(m.name)) === pid && (await status(m.url)) ? true : undefined), 30_000);
      }
    },
    etcdMembers: () => (u.etcd ?? []).map((e) => ({ name: e.name, clientUrl: e.clientUrl, pid: runFilePid(etcdRun(e.name)) })),
    async killEtcdMember(name) {
      const pid = runFilePid(etcdRun(name));
      assert.ok(pid, `etcd member ${name} runs`);
      process.kill(pid, 'SIGKILL');
      await until(`etcd member ${name} (pid ${pid}) to be gone`, () => (isLive(pid) ? undefined : true), 10_000);
    },
    async restartEtcdMember(name) {
      const e = (u.etcd ?? []).find((x) => x.name === name);
      const argv = etcdArgv.get(name) ?? [];
      if (!e || argv.length === 0) throw new Error(`no command line recorded for etcd member ${name}`);
      const pid = spawnLogged(argv, `etcd-${name}.log`);
      // `ferry down` stops the members its run files name.
      writeFileSync(etcdRun(name), JSON.stringify({ ...e, pid }));
      await until(`etcd member ${name} to be healthy`, async () => {
        const r = await fetch(`${e.clientUrl}/health`, { signal: AbortSignal.timeout(1000) }).catch(() => undefined);
        return r?.ok && ((await r.json()) as { health?: string }).health === 'true' ? true : undefined;
      }, 30_000);
    },
  };
}

/** The inode of named network namespace `name` (/run/netns/<name>), or undefined when there is none. */
export function netnsInode(name: string): number | undefined {
  try { return statSync(`/run/netns/${name}`).ino; } catch { return undefined; }
}

/** The inode of the network namespace process `pid` is in, or undefined when it is gone. */
export function netnsOfPid(pid: number): number | undefined {
  try {
    const ns = /net:\[(\d+)\]/.exec(readlinkSync(`/proc/${pid}/ns/net`))?.[1];
    return ns === undefined ? undefined : Number(ns);
  } catch {
    return undefined;
  }
}

/**
 * `ferry down` in `home`, then removes by force everything of simulation `id` (and of the home) that
 * is still there; returns what that was. `tid`, when given, names the logs kept under test-artifacts/.
 */
export async function teardownCluster(t: { home: string; tid?: string; id?: string }): Promise<string[]> {
  const { home } = t;
  const leftovers: string[] = [];
  let id = t.id;
  try { id ??= (JSON.parse(readFileSync(join(home, 'run', 'sim.json'), 'utf8')) as { id: string }).id; } catch { /* never made one */ }
  const nsPrefix = id ? `ferry-${id}-` : undefined;
  const netnsNames = (): string[] => (nsPrefix && existsSync('/run/netns') ? readdirSync('/run/netns').filter((n) => n.startsWith(nsPrefix)) : []);
  // Before `ferry down`: what ran, and the namespaces' inodes (to find processes still inside them after).
  const inodes = new Set(netnsNames().map(netnsInode).filter((i): i is number => i !== undefined));
  const runDir = join(home, 'run');
  // Daemons and etcd members (run/etcd-<member>.json) alike: whatever still runs after `ferry down` is a leftover.
  const runs = existsSync(runDir) ? readdirSync(runDir).map((n) => ({ n, pid: runFilePid(join(runDir, n)) })).filter((r): r is { n: string; pid: number } => r.pid !== undefined) : [];
  const down = await runCli(home, ['down']).catch((e: Error) => ({ code: 1, stdout: '', stderr: e.message }));
  if (down.code !== 0) leftovers.push(`ferry down exited ${down.code}: ${down.stderr.trim()}`);
  for (const { n, pid } of runs) {
    if (!isLive(pid)) continue;
    try { process.kill(pid, 'SIGKILL'); leftovers.push(`process ${pid} (${n.replace(/\.json$/, '')})`); } catch { /* gone, as it should be */ }
  }
  const agentsDir = join(home, 'agents');
  const runcRoots = existsSync(agentsDir) ? readdirSync(agentsDir).map((n) => join(agentsDir, n, 'runc')) : [];
  for (const root of runcRoots) {
    for (const cid of runcList(root)) {
      leftovers.push(`runc container ${cid}`);
      try { execFileSync('runc', ['--root', root, 'delete', '--force', cid], { stdio: 'ignore' }); } catch { /* best effort */ }
    }
  }
  // Processes of this run: argv naming the home (daemons, shims), or living in one of the simulated hosts.
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map(Number)) {
    if (pid === process.pid || !isLive(pid)) continue;
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const ns = netnsOfPid(pid);
      if (cmd.includes(home) || (ns !== undefined && inodes.has(ns))) {
        process.kill(pid, 'SIGKILL');
        leftovers.push(`process ${pid}: ${cmd.split('\0').join(' ').slice(0, 120)}`);
      }
    } catch { /* raced with exit */ }
  }
  const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m.startsWith(home) || (nsPrefix !== undefined && m.startsWith(`/run/netns/${nsPrefix}`))).reverse();
  for (const m of mounts) {
    leftovers.push(`mount ${m}`);
    try { execFileSync('umount', ['-l', m], { stdio: 'ignore' }); } catch { /* best effort */ }
  }
  for (const n of netnsNames()) {
    leftovers.push(`netns ${n}`);
    try { execFileSync('ip', ['netns', 'del', n], { stdio: 'ignore' }); } catch { rm(`/run/netns/${n}`, { force: true }).catch(() => undefined); }
  }
  if (id) {
    const links = (): string[] => execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).split('\n')
      .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1] ?? '').filter((n) => n.startsWith(`fu${id}`));
    // Veths of just-deleted namespaces vanish on their own; give them a moment before calling them leftovers.
    for (let i = 0; i < 50 && links().some((n) => n !== `fu${id}`); i++) await new Promise((r) => setTimeout(r, 100));
    for (const n of links().sort().reverse()) {
      leftovers.push(`link ${n}`);
      try { execFileSync('ip', ['link', 'del', n], { stdio: 'ignore' }); } catch { /* gone with its peer */ }
    }
    for (const ctl of ['', ...readdirSync('/sys/fs/cgroup')]) {
      for (const n of readdirSync(join('/sys/fs/cgroup', ctl)).filter((x) => x.startsWith(`ferry-${id}-h`))) {
        const dir = join('/sys/fs/cgroup', ctl, n);
        if (!statSync(dir).isDirectory()) continue;
        const subs = readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory());
        leftovers.push(`cgroup ${dir}${subs.length > 0 ? `/{${subs.map((d) => d.name).join(',')}}` : ''}`);
        for (const d of subs) { try { rmdirSync(join(dir, d.name)); } catch { /* busy */ } }
        try { rmdirSync(dir); } catch { /* busy */ }
      }
    }
    let rules: string[] = [];
    try { rules = execFileSync('iptables', ['-S', 'FORWARD'], { encoding: 'utf8' }).split('\n'); } catch { /* no iptables */ }
    for (const r of rules.filter((l) => l.startsWith('-A ') && l.includes(`"ferry:fu${id}`))) {
      leftovers.push(`iptables: ${r}`);
      try { execFileSync('iptables', r.replace(/^-A /, '-D ').replace(/"/g, '').split(' '), { stdio: 'ignore' }); } catch { /* best effort */ }
    }
  }
  if (existsSync(join(home, 'run', 'sim.json'))) leftovers.push('run/sim.json');
  // etcd's data outlives `ferry down` by design (like the SQLite file); what must not is a member's pid file.
  for (const n of existsSync(runDir) ? readdirSync(runDir).filter((x) => x.startsWith('etcd-')) : []) leftovers.push(`run/${n}`);
  // Keep the daemons' logs for a post-mortem (test-artifacts/ is git-ignored).
  if (t.tid) await cp(join(home, 'logs'), join(ROOT, 'test-artifacts', t.tid), { recursive: true }).catch(() => undefined);
  await removeScratchDirs(home);
  await rm(home, { recursive: true, force: true });
  return leftovers;
}

/**
 * Registers before/after hooks around a `startCluster` of `o.nodes` hosts (call inside a `describe`):
 * the prerequisites are checked first, and the teardown fails the suite when it had to remove anything.
 * The returned holder's `c` is set once `before` has run.
 */
export function useCluster(o: { nodes: number; managers?: number; tools: string[]; env?: Record<string, string>; extraAgentArgs?: string[]; upArgs?: string[]; lb?: boolean }): { c: TestCluster } {
  const holder = {} as { c: TestCluster };
  before(async () => {
    ensurePrerequisites(o.tools);
    holder.c = await startCluster(o);
  });
  after(async () => {
    if (!holder.c) return;
    const left = await holder.c.teardown();
    assert.deepEqual(left, [], `teardown found leftovers: ${left.join('; ')}`);
  });
  return holder;
}

/** A running line-echo client (test/support/line-client.mjs) holding one TCP connection. */
export interface LineClient {
  /** Answers received so far (counted in tens, as the client reports them). */
  answers(): number;
  /** The events the client reported that carry an error. */
  errors(): Array<Record<string, unknown>>;
  /** Waits until `n` more answers than now have arrived. */
  flowing(n: number, what: string): Promise<void>;
  /** Ends the client; resolves with its exit code and its closing report. */
  stop(): Promise<{ code: number | null; done: Record<string, unknown> | undefined }>;
}

/** Starts the line client in host `hostIndex`'s (0-based) network namespace against ip:port; waits until lines flow. */
export async function lineClient(c: TestCluster, hostIndex: number, ip: string, port: number): Promise<LineClient> {
  const script = join(ROOT, 'test', 'support', 'line-client.mjs');
  const child = spawn('nsenter', [`--net=/run/netns/${c.hosts[hostIndex]!.netns}`, '--', process.execPath, script, ip, String(port), '20'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const events: Array<Record<string, unknown>> = [];
  createInterface({ input: child.stdout! }).on('line', (l) => events.push(JSON.parse(l) as Record<string, unknown>));
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  const answers = (): number => Math.max(0, ...events.map((e) => (typeof e.ok === 'number' ? e.ok : 0)));
  const lc: LineClient = {
    answers,
    errors: () => events.filter((e) => 'error' in e && e.done !== true),
    async flowing(n, what) {
      const from = answers();
      await until(what, () => (answers() >= from + n ? true : undefined));
    },
    async stop() {
      child.kill('SIGTERM');
      const code = await exited;
      return { code, done: events.find((e) => e.done === true) };
    },
  };
  try {
    await lc.flowing(20, 'the client to exchange lines');
  } catch (e) {
    await lc.stop();
    throw e;
  }
  return lc;
}
