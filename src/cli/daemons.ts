/**
 * `ferry up` / `ferry down`: start and stop the manager and agent(s) as background processes of one
 * home — one agent on this machine, or with `--nodes N` one per simulated host (simulation.ts).
 */
import { spawn } from 'node:child_process';
import { mkdir, open, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryClient } from '../client/index.ts';
import { FerryError } from '../errors/index.ts';
import { configFile } from './config.ts';
import { homePaths, TOOLS } from './paths.ts';
import { createSimulation, destroySimulation, readSimulation, type SimPlan } from './simulation.ts';
import { checkEtcd, removeEtcdData, startEtcd, stopEtcd, stopMember, storeUrlOf, type EtcdMember } from './etcd.ts';

/** What a daemon writes once it listens. */
export interface RunFile {
  pid: number;
  url: string;
  role: 'manager' | 'agent' | 'lb';
  name?: string;
}

/** A daemon's log line: an ISO timestamp, then the message. */
export function stamp(msg: string): void {
  process.stdout.write(`${new Date().toISOString()} ${msg}\n`);
}

/** The cluster token a daemon authenticates with (`ferry up` passes it in FERRY_TOKEN). */
export function needToken(): string {
  const t = process.env.FERRY_TOKEN;
  if (!t) throw new FerryError('FERRY_ERR_NO_TOKEN', 400, 'set FERRY_TOKEN to the cluster token (ferry up does this for you)');
  return t;
}

/** Waits for SIGTERM/SIGINT, then runs `stop` once (a daemon's foreground life). */
export function onShutdown(stop: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    let done = false;
    const handler = (): void => {
      if (done) return;
      done = true;
      stop().finally(resolve);
    };
    process.on('SIGTERM', handler);
    process.on('SIGINT', handler);
  });
}

/** True when `pid` is a live Ferry process of `role` (guards against reused pids). */
export async function isOurProcess(pid: number, role: string): Promise<boolean> {
  try {
    const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    return cmd.some((a) => a.endsWith('src/cli/main.ts')) && cmd.includes(role);
  } catch {
    return false;
  }
}

async function readRun(file: string): Promise<RunFile | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as RunFile;
  } catch {
    return undefined;
  }
}

/** Live daemons of a home. */
export async function runningDaemons(home: string): Promise<RunFile[]> {
  const p = homePaths(home);
  const out: RunFile[] = [];
  for (const f of await readdir(p.run).catch(() => [] as string[])) {
    if (join(p.run, f) === p.simulation) continue;
    const r = await readRun(join(p.run, f));
    if (r && (await isOurProcess(r.pid, r.role))) out.push(r);
  }
  return out;
}

async function logTail(logFile: string): Promise<string> {
  return (await readFile(logFile, 'utf8').catch(() => '')).split('\n').slice(-15).join('\n');
}

/**
 * True once `pid` (a daemon just spawned as `role`) has exited. Not merely "not ours right now": while a
 * process is inside execve (nsenter becoming node) its /proc cmdline reads empty, so a live daemon
 * that does not look like ours is looked at again before it counts as gone.
 */
export async function daemonExited(pid: number, role: string): Promise<boolean> {
  if (await isOurProcess(pid, role)) return false;
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    if (state === 'Z' || state === 'X') return true;
  } catch {
    return true;
  }
  await new Promise((r) => setTimeout(r, 200));
  return !(await isOurProcess(pid, role));
}

/** Throws START_FAILED, with the log's last lines, once daemon `pid` has exited while starting. */
function exitedWhileStarting(pid: number, role: string, what: string, logFile: string): () => Promise<void> {
  return async () => {
    if (await daemonExited(pid, role)) throw new FerryError('FERRY_ERR_START_FAILED', 500, `${what} exited while starting; last lines of ${logFile}:\n${await logTail(logFile)}`);
  };
}

/** Polls `fn` until it yields; `check` (optional) throws to give up early, e.g. when the daemon died. */
async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number, logFile: string, check?: () => Promise<void>): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    await check?.();
    if (Date.now() - t0 > timeoutMs) {
      throw new FerryError('FERRY_ERR_START_FAILED', 500, `${what} did not come up within ${timeoutMs / 1000} s; last lines of ${logFile}:\n${await logTail(logFile)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function spawnDaemon(args: string[], logFile: string, env: Record<string, string>, netns?: string): Promise<number> {
  const log = await open(logFile, 'a');
  const node = [process.execPath, '--import', TOOLS.tsx, '--no-warnings=ExperimentalWarning', TOOLS.main, ...args];
  // nsenter enters only the network namespace (`ip netns exec` would also make a mount namespace) and
  // execs node, so the pid and /proc/PID/cmdline are the daemon's own (isOurProcess holds).
  const [cmd, ...argv] = netns ? ['nsenter', `--net=/run/netns/${netns}`, '--', ...node] : node;
  const child = spawn(cmd!, argv, {
    detached: true, stdio: ['ignore', log.fd, log.fd], env: { ...process.env, ...env },
  });
  child.unref();
  await log.close();
  return child.pid!;
}

/** Starts the entry point (`ferry lb`) and waits until it listens; `netns` for a simulated host. */
async function startLb(home: string, managerUrl: string, lb: { http: string; tcp: string }, env: Record<string, string>, netns?: string, onSpawned?: (pid: number) => void): Promise<{ pid: number; url: string }> {
  const p = homePaths(home);
  const runFile = p.lbRun('lb');
  await rm(runFile, { force: true });
  const log = join(p.logs, 'lb.log');
  const pid = await spawnDaemon(['lb', '--home', home, '--manager', managerUrl, '--http', lb.http, '--tcp', lb.tcp], log, env, netns);
  // Known to the caller's undo before the wait: a start that fails or times out must not leave it running.
  onSpawned?.(pid);
  const run = await waitFor('the entry point', () => readRun(runFile), 30_000, log, exitedWhileStarting(pid, 'lb', 'the entry point', log));
  return { pid, url: run.url };
}

/** Options of `ferry up`. */
export interface UpOptions {
  home: string;
  host: string;
  port: number;
  agentPort: number;
  nodeName: string;
  extraAgentArgs?: string[];
  /** The entry point's listeners (`ADDR:PORT`, `ADDR:FIRST-LAST`); false: none. */
  lb: { http: string; tcp: string } | false;
  progress: (msg: string) => void;
}

async function refuseIfRunning(home: string): Promise<void> {
  const live = await runningDaemons(home);
  if (live.length > 0) {
    const m = live.find((d) => d.role === 'manager');
    throw new FerryError('FERRY_ERR_ALREADY_RUNNING', 409, `Ferry is already running in ${home} (${live.map((d) => `${d.role} pid ${d.pid}`).join(', ')}${m ? `, API ${m.url}` : ''}); run \`ferry down\` first`);
  }
}

/** Starts manager + one agent in the background and waits until the node is Ready. */
export async function up(o: UpOptions): Promise<{ api: string; token: string; node: string; entryPoint?: string }> {
  const p = homePaths(o.home);
  await refuseIfRunning(o.home);
  await removeStaleSimulation(o.home, o.progress);
  await Promise.all([p.manager, p.agents, p.logs, p.run].map((d) => mkdir(d, { recursive: true })));
  await rm(p.managerRun, { force: true });
  await rm(p.agentRun(o.nodeName), { force: true });
  const { loadOrCreateToken } = await import('../manager/index.ts');
  const token = await loadOrCreateToken(join(p.manager, 'token'));
  const env = { FERRY_TOKEN: token };

  o.progress('starting manager');
  const mLog = join(p.logs, 'manager.log');
  await spawnDaemon(['manager', '--home', o.home, '--host', o.host, '--port', String(o.port)], mLog, env);
  const m = await waitFor('the manager', () => readRun(p.managerRun), 30_000, mLog);
  const client = new FerryClient({ url: m.url, token });
  await waitFor('the manager API', () => client.health(), 30_000, mLog);

  o.progress(`starting agent ${o.nodeName}`);
  const aLog = join(p.logs, `agent-${o.nodeName}.log`);
  await spawnDaemon(['agent', '--home', o.home, '--manager', m.url, '--name', o.nodeName, '--port', String(o.agentPort),
    '--shared-volumes', homePaths(o.home).sharedVolumes, ...(o.extraAgentArgs ?? [])], aLog, env);
  await waitFor(`the agent of ${o.nodeName}`, async () => {
    const n = (await client.nodes.list()).find((v) => v.node.metadata.name === o.nodeName && v.state === 'Ready');
    const imgs = await client.images.list();
    return n && imgs.some((i) => i.nodes.includes(o.nodeName)) ? n : undefined;
  }, 120_000, aLog);
  let entry: string | undefined;
  if (o.lb) {
    o.progress(`starting the entry point on ${o.lb.http}`);
    entry = (await startLb(o.home, m.url, o.lb, env)).url;
  }
  await writeFile(configFile(o.home), JSON.stringify({ api: m.url, token }, null, 2), { mode: 0o600 });
  return { api: m.url, token, node: o.nodeName, ...(entry ? { entryPoint: entry } : {}) };
}

/** Options of `ferry up --nodes N` (N ≥ 2). */
export interface ClusterUpOptions extends Omit<UpOptions, 'host'> {
  nodes: number;
  /** 1: one manager on SQLite; 3: three managers electing a leader over a 3-member etcd. */
  managers: 1 | 3;
  /** Cluster-wide container network the manager runs (VXLAN). */
  clusterSubnet: string;
  vni: number;
}

/** One simulated host of `ferry up --nodes N` as the CLI reports it. */
export interface SimulatedNode {
  name: string;
  netns: string;
  underlayIp: string;
  cgroupParent: string;
  idPrefix: string;
  dataDir: string;
}

/** What `ferry up --nodes N` started. */
export interface ClusterUp {
  /** The manager API URL, or with several managers their URLs separated by commas (clients follow the leader). */
  api: string;
  token: string;
  /** Every manager started (one, or three with `--managers 3`). */
  managers: { name?: string; url: string; pid: number }[];
  /** The etcd members the managers share (with `--managers 3`). */
  etcd?: EtcdMember[];
  simulation: { id: string; bridge: string; subnet: string; gateway: string };
  nodes: SimulatedNode[];
  /** The entry point's HTTP URL (it runs on the first host), when one was started. */
  entryPoint?: string;
}

/** SIGTERM, then SIGKILL after `graceMs`; returns once the process is gone. */
async function stopDaemon(pid: number, role: string, graceMs = 20_000): Promise<void> {
  if (await daemonExited(pid, role)) return;
  try { process.kill(pid, 'SIGTERM'); } catch { return; }
  const t0 = Date.now();
  while (!(await daemonExited(pid, role))) {
    if (Date.now() - t0 > graceMs) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } break; }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A crashed `ferry up --nodes` leaves sim.json behind with no daemon running: remove its hosts. */
async function removeStaleSimulation(home: string, progress: (m: string) => void): Promise<void> {
  const file = homePaths(home).simulation;
  const stale = await readSimulation(file);
  if (!stale) return;
  progress(`removing simulated hosts ${stale.id} left by an earlier run`);
  await destroySimulation(stale, file);
}

/**
 * Starts a simulated cluster: N hosts (network namespaces on a private underlay bridge), the manager
 * on the bridge address, and one agent per host entered into its namespace; waits until every node
 * is Ready with its images. A failure removes everything this run made, then throws.
 */
export async function upCluster(o: ClusterUpOptions): Promise<ClusterUp> {
  const p = homePaths(o.home);
  await refuseIfRunning(o.home);
  if (o.managers === 3) await checkEtcd();
  await removeStaleSimulation(o.home, o.progress);
  await Promise.all([p.manager, p.agents, p.logs, p.run].map((d) => mkdir(d, { recursive: true })));
  // etcd members a crashed run left behind would hold the ports this one needs.
  await stopEtcd(o.home, o.progress);
  const hadEtcd = await readFile(join(p.etcd, 'cluster.json')).then(() => true, () => false);
  const { loadOrCreateToken } = await import('../manager/index.ts');
  const token = await loadOrCreateToken(join(p.manager, 'token'));
  const env = { FERRY_TOKEN: token };
  const started: { pid: number; role: 'manager' | 'agent' | 'lb' }[] = [];
  const etcd: EtcdMember[] = [];
  const managerNames = o.managers === 3 ? ['m1', 'm2', 'm3'] : [undefined];
  const managerRuns = managerNames.map((n) => (n === undefined ? p.managerRun : p.managerRunOf(n)));
  const names = Array.from({ length: o.nodes }, (_, k) => `${o.nodeName}-${k + 1}`);
  let plan: SimPlan | undefined;
  // Ctrl-C or a SIGTERM while starting still removes what was made.
  let interrupted: string | undefined;
  const onSignal = (sig: string): void => { interrupted = sig; };
  const alive = (pid: number, role: string, what: string, logFile: string) => async (): Promise<void> => {
    if (interrupted) throw new FerryError('FERRY_ERR_INTERRUPTED', 500, `interrupted by ${interrupted}`);
    await exitedWhileStarting(pid, role, what, logFile)();
  };
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
  try {
    o.progress(`creating ${o.nodes} simulated hosts`);
    plan = await createSimulation(o.nodes, p.simulation, o.progress);
    const sim = plan;
    if (o.managers === 3) {
      o.progress(`starting etcd (3 members) on ${sim.gateway}`);
      await startEtcd({ home: o.home, host: sim.gateway, count: 3, progress: o.progress, onStarted: (m) => etcd.push(m) });
    }
    const managers: ClusterUp['managers'] = [];
    let mLog = '';
    for (const [k, name] of managerNames.entries()) {
      await rm(managerRuns[k]!, { force: true });
      const what = name === undefined ? 'the manager' : `manager ${name}`;
      o.progress(`starting ${what} on ${sim.gateway}`);
      mLog = join(p.logs, name === undefined ? 'manager.log' : `manager-${name}.log`);
      const ha = name === undefined ? [] : ['--store', storeUrlOf(etcd), '--name', name];
      const mPid = await spawnDaemon(['manager', '--home', o.home, '--host', sim.gateway, '--port', String(o.port === 0 ? 0 : o.port + k), '--cluster-subnet', o.clusterSubnet, '--vni', String(o.vni), ...ha], mLog, env);
      started.push({ pid: mPid, role: 'manager' });
      const m = await waitFor(what, () => readRun(managerRuns[k]!), 30_000, mLog, alive(mPid, 'manager', what, mLog));
      await waitFor(`the API of ${what}`, () => new FerryClient({ url: m.url, token }).health(), 30_000, mLog, alive(mPid, 'manager', what, mLog));
      managers.push({ ...(name !== undefined ? { name } : {}), url: m.url, pid: mPid });
    }
    const api = managers.map((m) => m.url).join(',');
    const client = new FerryClient({ url: api, token });
    // Standbys answer only who leads: the API is usable once one of them leads.
    if (o.managers === 3) await waitFor('a leader among the managers', async () => (await client.nodes.list(), true), 60_000, mLog);

    const nodes: SimulatedNode[] = sim.hosts.map((h, k) => ({
      name: names[k]!, netns: h.netns, underlayIp: h.underlayIp, cgroupParent: h.cgroupParent, idPrefix: h.idPrefix, dataDir: join(p.agents, names[k]!),
    }));
    const checks: (() => Promise<void>)[] = [];
    for (const [k, n] of nodes.entries()) {
      await rm(p.agentRun(n.name), { force: true });
      o.progress(`host ${k + 1}/${o.nodes}: starting agent ${n.name} in ${n.netns} (${n.underlayIp})`);
      const log = join(p.logs, `agent-${n.name}.log`);
      const pid = await spawnDaemon(['agent', '--home', o.home, '--manager', api, '--name', n.name, '--host', n.underlayIp, '--port', String(o.agentPort),
        '--underlay-ip', n.underlayIp, '--cgroup-parent', n.cgroupParent, '--id-prefix', n.idPrefix, '--shared-volumes', p.sharedVolumes,
        ...(o.extraAgentArgs ?? [])], log, env, n.netns);
      started.push({ pid, role: 'agent' });
      checks.push(alive(pid, 'agent', `the agent of ${n.name}`, log));
    }
    const pending = new Set(nodes.map((n) => n.name));
    await waitFor(`the agents of ${[...pending].join(', ')}`, async () => {
      const [list, imgs] = await Promise.all([client.nodes.list(), client.images.list()]);
      for (const [k, n] of nodes.entries()) {
        if (!pending.has(n.name)) continue;
        const ready = list.some((v) => v.node.metadata.name === n.name && v.state === 'Ready') && imgs.some((i) => i.nodes.includes(n.name));
        if (ready) { pending.delete(n.name); o.progress(`host ${k + 1}/${o.nodes}: node ${n.name} Ready`); }
      }
      return pending.size === 0 ? true : undefined;
    }, 120_000, join(p.logs, `agent-${nodes[0]!.name}.log`), async () => { for (const c of checks) await c(); });
    let entryPoint: string | undefined;
    if (o.lb) {
      // On the first host: it reaches every container over the cluster network, clients reach it on the underlay.
      const at = nodes[0]!;
      const lb = { http: o.lb.http.replace(/^[^:]*/, at.underlayIp), tcp: o.lb.tcp.replace(/^[^:]*/, at.underlayIp) };
      o.progress(`starting the entry point on ${at.name} (${lb.http})`);
      const r = await startLb(o.home, api, lb, env, at.netns, (pid) => started.push({ pid, role: 'lb' }));
      entryPoint = r.url;
    }
    await writeFile(configFile(o.home), JSON.stringify({ api, token }, null, 2), { mode: 0o600 });
    return {
      api, token, managers, ...(o.managers === 3 ? { etcd } : {}),
      simulation: { id: sim.id, bridge: sim.bridge, subnet: sim.subnet, gateway: sim.gateway }, nodes, ...(entryPoint ? { entryPoint } : {}),
    };
  } catch (e) {
    o.progress('start failed; removing what this run made');
    const undone: string[] = [];
    // Agents first (so they stop watching), then the managers, then their etcd.
    for (const d of [...started].reverse()) await stopDaemon(d.pid, d.role, 10_000);
    for (const m of etcd) await stopMember(o.home, m);
    if (etcd.length > 0 && !hadEtcd) await removeEtcdData(o.home);
    await Promise.all([...managerRuns, p.lbRun('lb'), ...names.map((n) => p.agentRun(n)), configFile(o.home)].map((f) => rm(f, { force: true })));
    if (plan) await destroySimulation(plan, p.simulation).catch((err: Error) => undone.push(err.message));
    const what = [started.length + etcd.length > 0 ? `${started.length + etcd.length} process(es)` : '', plan ? `simulated hosts ${plan.id}` : ''].filter(Boolean).join(', ');
    const note = undone.length > 0 ? `; removing what it made failed: ${undone.join('; ')}` : what ? `; removed what it made (${what})` : '; nothing was left behind';
    const ferr = e instanceof FerryError ? e : new FerryError('FERRY_ERR_START_FAILED', 500, (e as Error).message, {}, { cause: e });
    throw new FerryError(ferr.code, ferr.status, `${ferr.message}${note}`, { ...ferr.details, ...(plan ? { simulation: plan.id } : {}) }, { cause: e });
  } finally {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
  }
}

/** Stops the daemons of a home; unless `keepContainers`, removes every container first; removes simulated hosts. */
export async function down(o: { home: string; keepContainers: boolean; progress: (m: string) => void }): Promise<{ stopped: RunFile[]; removed: string[]; simulation?: string; etcd?: string[] }> {
  const p = homePaths(o.home);
  const sim = await readSimulation(p.simulation);
  if (sim && o.keepContainers) {
    throw new FerryError('FERRY_ERR_BAD_FLAG', 400, `--keep-containers cannot apply to simulated hosts (${sim.id}): their containers go with them; run \`ferry down\``);
  }
  const live = await runningDaemons(o.home);
  const removed: string[] = [];
  const managerUrls = live.filter((d) => d.role === 'manager').map((d) => d.url);
  if (managerUrls.length > 0 && !o.keepContainers) {
    const token = await readFile(join(homePaths(o.home).manager, 'token'), 'utf8').then((t) => t.trim());
    // Several managers: the client follows whichever leads.
    const client = new FerryClient({ url: managerUrls.join(','), token });
    // Services first, or their controller would replace the replicas removed below.
    for (const sv of await client.services.list().catch(() => [])) await client.services.remove(sv.service.metadata.name).catch(() => undefined);
    const all = await client.containers.list();
    if (all.length > 0) o.progress(`removing ${all.length} container(s)`);
    await Promise.all(all.map(async (v) => {
      await client.containers.remove(v.container.metadata.name, { wait: true, force: true, timeoutMs: 60_000 });
      removed.push(v.container.metadata.name);
    }));
  }
  // The entry point and agents first (so they stop watching), then the manager.
  for (const role of ['lb', 'agent', 'manager']) {
    for (const d of live.filter((x) => x.role === role)) {
      o.progress(`stopping ${d.role}${d.name ? ` ${d.name}` : ''} (pid ${d.pid})`);
      await stopDaemon(d.pid, d.role);
    }
  }
  // After the managers, which would otherwise fail over and log errors; the data stays like the SQLite file.
  const etcd = (await stopEtcd(o.home, o.progress)).map((m) => m.name);
  if (sim) {
    o.progress(`removing simulated hosts ${sim.id} (${sim.hosts.length} netns, bridge ${sim.bridge})`);
    await destroySimulation(sim, p.simulation);
  }
  await rm(p.run, { recursive: true, force: true });
  await rm(configFile(o.home), { force: true });
  return { stopped: live, removed, ...(sim ? { simulation: sim.id } : {}), ...(etcd.length > 0 ? { etcd } : {}) };
}
