/** `ferry up` / `ferry down`: start and stop the manager and agent as background processes of one home. */
import { spawn } from 'node:child_process';
import { mkdir, open, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryClient } from '../client/index.ts';
import { FerryError } from '../errors/index.ts';
import { loadOrCreateToken } from '../manager/index.ts';
import { configFile } from './config.ts';
import { homePaths, TOOLS } from './paths.ts';

/** What a daemon writes once it listens. */
export interface RunFile {
  pid: number;
  url: string;
  role: 'manager' | 'agent';
  name?: string;
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
    const r = await readRun(join(p.run, f));
    if (r && (await isOurProcess(r.pid, r.role))) out.push(r);
  }
  return out;
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number, logFile: string): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() - t0 > timeoutMs) {
      const tail = (await readFile(logFile, 'utf8').catch(() => '')).split('\n').slice(-15).join('\n');
      throw new FerryError('FERRY_ERR_START_FAILED', 500, `${what} did not come up within ${timeoutMs / 1000} s; last lines of ${logFile}:\n${tail}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function spawnDaemon(args: string[], logFile: string, env: Record<string, string>): Promise<number> {
  const log = await open(logFile, 'a');
  const child = spawn(process.execPath, ['--import', TOOLS.tsx, '--no-warnings=ExperimentalWarning', TOOLS.main, ...args], {
    detached: true, stdio: ['ignore', log.fd, log.fd], env: { ...process.env, ...env },
  });
  child.unref();
  await log.close();
  return child.pid!;
}

/** Options of `ferry up`. */
export interface UpOptions {
  home: string;
  host: string;
  port: number;
  agentPort: number;
  nodeName: string;
  extraAgentArgs?: string[];
  progress: (msg: string) => void;
}

/** Starts manager + one agent in the background and waits until the node is Ready. */
export async function up(o: UpOptions): Promise<{ api: string; token: string; node: string }> {
  const p = homePaths(o.home);
  const live = await runningDaemons(o.home);
  if (live.length > 0) {
    const m = live.find((d) => d.role === 'manager');
    throw new FerryError('FERRY_ERR_ALREADY_RUNNING', 409, `Ferry is already running in ${o.home} (${live.map((d) => `${d.role} pid ${d.pid}`).join(', ')}${m ? `, API ${m.url}` : ''}); run \`ferry down\` first`);
  }
  await Promise.all([p.manager, p.agents, p.logs, p.run].map((d) => mkdir(d, { recursive: true })));
  await rm(p.managerRun, { force: true });
  await rm(p.agentRun(o.nodeName), { force: true });
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
  await spawnDaemon(['agent', '--home', o.home, '--manager', m.url, '--name', o.nodeName, '--port', String(o.agentPort), ...(o.extraAgentArgs ?? [])], aLog, env);
  await waitFor(`the agent of ${o.nodeName}`, async () => {
    const n = (await client.nodes.list()).find((v) => v.node.metadata.name === o.nodeName && v.state === 'Ready');
    const imgs = await client.images.list();
    return n && imgs.some((i) => i.nodes.includes(o.nodeName)) ? n : undefined;
  }, 120_000, aLog);
  await writeFile(configFile(o.home), JSON.stringify({ api: m.url, token }, null, 2), { mode: 0o600 });
  return { api: m.url, token, node: o.nodeName };
}

/** Stops the daemons of a home; unless `keepContainers`, removes every container first. */
export async function down(o: { home: string; keepContainers: boolean; progress: (m: string) => void }): Promise<{ stopped: RunFile[]; removed: string[] }> {
  const live = await runningDaemons(o.home);
  const removed: string[] = [];
  const m = live.find((d) => d.role === 'manager');
  if (m && !o.keepContainers) {
    const token = await readFile(join(homePaths(o.home).manager, 'token'), 'utf8').then((t) => t.trim());
    const client = new FerryClient({ url: m.url, token });
    const all = await client.containers.list();
    if (all.length > 0) o.progress(`removing ${all.length} container(s)`);
    await Promise.all(all.map(async (v) => {
      await client.containers.remove(v.container.metadata.name, { wait: true, force: true, timeoutMs: 60_000 });
      removed.push(v.container.metadata.name);
    }));
  }
  // Agents first (so they stop watching), then the manager.
  for (const role of ['agent', 'manager']) {
    for (const d of live.filter((x) => x.role === role)) {
      o.progress(`stopping ${d.role}${d.name ? ` ${d.name}` : ''} (pid ${d.pid})`);
      process.kill(d.pid, 'SIGTERM');
      const t0 = Date.now();
      while (await isOurProcess(d.pid, d.role)) {
        if (Date.now() - t0 > 20_000) { process.kill(d.pid, 'SIGKILL'); break; }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
  await rm(homePaths(o.home).run, { recursive: true, force: true });
  await rm(configFile(o.home), { force: true });
  return { stopped: live, removed };
}
