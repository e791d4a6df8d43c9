/**
 * The etcd of `ferry up --managers 3`: three members of Debian's etcd as background processes of one
 * home (data in `<home>/etcd/<member>`, pid files in `<home>/run/etcd-<member>.json`), started and
 * stopped by PID only. Clients listen on the address the managers use (the simulated underlay's
 * bridge address); peers talk over loopback on ports kept in `<home>/etcd/cluster.json`, because etcd
 * stores its peer URLs in its data and a later `ferry up` gets a new underlay address.
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { constants } from 'node:fs';
import { access, mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { defineErrors } from '../errors/index.ts';
import { homePaths } from './paths.ts';

/** Errors of the CLI's etcd members. */
export const etcdErrors = defineErrors({
  ETCD_MISSING: { status: 500, message: 'etcd is needed for --managers 3 but {bin} cannot be run ({reason}); install etcd-server (scripts/setup does) or set FERRY_ETCD' },
  ETCD_START_FAILED: { status: 500, message: 'etcd member {member} at {url} {why}; last lines of {log}:\n{tail}' },
});

/** The etcd binary `ferry up --managers 3` runs. */
export const ETCD_BIN = process.env.FERRY_ETCD ?? '/usr/bin/etcd';

/** One member of a home's etcd as `ferry up` reports it. */
export interface EtcdMember {
  name: string;
  pid: number;
  /** Where the managers reach it. */
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
}

/** The parts of a home's etcd that outlive a `ferry down`: names, ports and cluster token of the members. */
interface EtcdLayout {
  token: string;
  members: { name: string; clientPort: number; peerPort: number }[];
}

/** Paths of a home's etcd. */
function etcdPaths(home: string): { root: string; layout: string; log: (m: string) => string; run: (m: string) => string; data: (m: string) => string } {
  return {
    root: homePaths(home).etcd,
    layout: join(homePaths(home).etcd, 'cluster.json'),
    log: (m) => join(home, 'logs', `etcd-${m}.log`),
    run: (m) => join(home, 'run', `etcd-${m}.json`),
    data: (m) => join(homePaths(home).etcd, m),
  };
}

/** A TCP port free on `host` right now. */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** True when `pid` is an etcd whose data dir is `dataDir` (guards against reused pids). */
async function isMember(pid: number, dataDir: string): Promise<boolean> {
  try {
    const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z') return false;
    return cmd.some((a) => a.endsWith('etcd')) && cmd.includes(dataDir);
  } catch {
    return false;
  }
}

/** The members of `home` whose process still runs. */
export async function runningEtcd(home: string): Promise<EtcdMember[]> {
  const p = etcdPaths(home);
  const layout = await readLayout(home);
  const out: EtcdMember[] = [];
  for (const m of layout?.members ?? []) {
    const run = await readFile(p.run(m.name), 'utf8').then((t) => JSON.parse(t) as EtcdMember, () => undefined);
    if (run && (await isMember(run.pid, p.data(m.name)))) out.push(run);
  }
  return out;
}

async function readLayout(home: string): Promise<EtcdLayout | undefined> {
  return readFile(etcdPaths(home).layout, 'utf8').then((t) => JSON.parse(t) as EtcdLayout, () => undefined);
}

async function healthy(url: string): Promise<boolean> {
  try {
    const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
    return r.ok && ((await r.json()) as { health?: string }).health === 'true';
  } catch {
    return false;
  }
}

/** Throws ETCD_MISSING unless the etcd binary can be run (checked before anything is created). */
export async function checkEtcd(): Promise<void> {
  try {
    await access(ETCD_BIN, constants.X_OK);
  } catch (e) {
    throw etcdErrors.ETCD_MISSING({ bin: ETCD_BIN, reason: (e as NodeJS.ErrnoException).code ?? (e as Error).message }, e);
  }
}

/** The store URL of the managers: `etcd://host:port,…` over every member. */
export function storeUrlOf(members: readonly Pick<EtcdMember, 'clientUrl'>[]): string {
  return `etcd://${members.map((m) => new URL(m.clientUrl).host).join(',')}`;
}

/**
 * Starts `count` etcd members of `home` with clients on `host` and waits until each is healthy (which
 * needs a quorum). A home that ran them before keeps its data, names and ports. `onStarted` learns every
 * pid as soon as it exists, so a caller's cleanup can stop it even when this throws.
 */
export async function startEtcd(o: { home: string; host: string; count: number; progress: (m: string) => void; onStarted: (m: EtcdMember) => void }): Promise<{ members: EtcdMember[]; created: boolean }> {
  const p = etcdPaths(o.home);
  await checkEtcd();
  let layout = await readLayout(o.home);
  const created = layout === undefined || layout.members.length !== o.count;
  if (created) {
    // A fresh cluster (or one of another size, whose data cannot be reused).
    await rm(p.root, { recursive: true, force: true });
    const members = [];
    for (let k = 1; k <= o.count; k++) members.push({ name: `e${k}`, clientPort: await freePort(o.host), peerPort: await freePort('127.0.0.1') });
    layout = { token: `ferry-${randomBytes(6).toString('hex')}`, members };
  }
  await mkdir(p.root, { recursive: true, mode: 0o700 });
  await writeFile(p.layout, JSON.stringify(layout, null, 2));
  const l = layout as EtcdLayout;
  const peer = (m: EtcdLayout['members'][number]): string => `http://127.0.0.1:${m.peerPort}`;
  const initialCluster = l.members.map((m) => `${m.name}=${peer(m)}`).join(',');
  const members: EtcdMember[] = [];
  for (const m of l.members) {
    const clientUrl = `http://${o.host}:${m.clientPort}`;
    o.progress(`starting etcd member ${m.name} on ${clientUrl}${created ? '' : ' (existing data)'}`);
    await rm(p.run(m.name), { force: true });
    const log = await open(p.log(m.name), 'a');
    // Short raft timings: the members share one machine, and a quick election keeps manager failover quick.
    const child = spawn(ETCD_BIN, [
      '--name', m.name, '--data-dir', p.data(m.name),
      '--listen-client-urls', clientUrl, '--advertise-client-urls', clientUrl,
      '--listen-peer-urls', peer(m), '--initial-advertise-peer-urls', peer(m),
      '--initial-cluster', initialCluster, '--initial-cluster-state', 'new', '--initial-cluster-token', l.token,
      '--heartbeat-interval', '50', '--election-timeout', '500',
      '--auto-compaction-mode', 'periodic', '--auto-compaction-retention', '1h', '--log-level', 'warn',
    ], { detached: true, stdio: ['ignore', log.fd, log.fd] });
    child.unref();
    await log.close();
    const member: EtcdMember = { name: m.name, pid: child.pid!, clientUrl, peerUrl: peer(m), dataDir: p.data(m.name) };
    await writeFile(p.run(m.name), JSON.stringify(member));
    o.onStarted(member);
    members.push(member);
  }
  await Promise.all(members.map(async (m) => {
    const t0 = Date.now();
    while (!(await healthy(m.clientUrl))) {
      const exited = !(await isMember(m.pid, m.dataDir));
      if (exited || Date.now() - t0 > 30_000) {
        const tail = (await readFile(p.log(m.name), 'utf8').catch(() => '')).split('\n').slice(-15).join('\n');
        throw etcdErrors.ETCD_START_FAILED({ member: m.name, url: m.clientUrl, why: exited ? 'exited while starting' : 'was not healthy within 30 s', log: p.log(m.name), tail });
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }));
  return { members, created };
}

/** SIGTERM to a member by PID, SIGKILL after `graceMs`; returns once it is gone and its pid file removed. */
export async function stopMember(home: string, m: Pick<EtcdMember, 'name' | 'pid' | 'dataDir'>, graceMs = 10_000): Promise<void> {
  if (await isMember(m.pid, m.dataDir)) {
    try { process.kill(m.pid, 'SIGTERM'); } catch { /* gone meanwhile */ }
    const t0 = Date.now();
    while (await isMember(m.pid, m.dataDir)) {
      if (Date.now() - t0 > graceMs) { try { process.kill(m.pid, 'SIGKILL'); } catch { /* gone */ } }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  await rm(etcdPaths(home).run(m.name), { force: true });
}

/** Stops every running member of `home` (its data stays, like the manager's SQLite file); returns them. */
export async function stopEtcd(home: string, progress: (m: string) => void): Promise<EtcdMember[]> {
  const live = await runningEtcd(home);
  for (const m of live) {
    progress(`stopping etcd member ${m.name} (pid ${m.pid})`);
    await stopMember(home, m);
  }
  return live;
}

/** Removes the etcd data of `home` (a failed first start made it; nothing else refers to it). */
export async function removeEtcdData(home: string): Promise<void> {
  await rm(etcdPaths(home).root, { recursive: true, force: true });
}
