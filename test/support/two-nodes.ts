/**
 * The two-host fixture of the migration tests: a simulated cluster (`ferry up --nodes 2`, see
 * cluster.ts) whose host A (`hosts[0]`) and host B (`hosts[1]`) are network namespaces with an agent,
 * data dir and cgroup parent each, joined over the VXLAN overlay. The sample app's counter is read by
 * the container's overlay address from inside host A (published ports do not follow a move). The
 * describes of one file share one cluster: `onSharedCluster` gives each its failpoints and leaves the
 * cluster clean for the next.
 */
import { before, after } from 'node:test';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import assert from 'node:assert/strict';
import { ROOT } from './ferry.ts';
import { defaultScratchDir, SCRATCH_OWNER_FILE } from '../../src/agent/migrate.ts';
import { useCluster, type SimHostInfo, type TestCluster } from './cluster.ts';
import type { Migration } from '../../src/model/index.ts';
import { TERMINAL } from '../../src/migration/index.ts';
import { until } from './wait.ts';

/** What the migration tests need. */
export const MIGRATION_TOOLS = ['runc', 'ip', 'iptables', 'ebtables', 'bridge', 'nsenter', '/usr/bin/busybox', '/opt/ferry/bin/criu'];

/** The fixture; its fields are set once `before` has run. */
export interface TwoNodes {
  c: TestCluster;
  /** Host A: where the tests start their containers. */
  a: SimHostInfo;
  /** Host B: where they move them. */
  b: SimHostInfo;
}

/** Registers before/after hooks for a two-host cluster (call inside a `describe`); the teardown fails the suite when anything was left behind. */
export function twoNodes(): TwoNodes {
  const cluster = useCluster({ nodes: 2, tools: MIGRATION_TOOLS });
  const t = {} as TwoNodes;
  before(() => {
    t.c = cluster.c;
    t.a = cluster.c.hosts[0]!;
    t.b = cluster.c.hosts[1]!;
  });
  return t;
}

/** Failpoints (FERRY_FAILPOINTS) for the manager and the agents of host A and B during one describe. */
export interface Failpoints {
  manager?: string;
  a?: string;
  b?: string;
}

/** The FERRY_FAILPOINTS that process `pid` runs with ('' when none). */
function failpointsOf(pid: number): string {
  const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
  return env.find((e) => e.startsWith('FERRY_FAILPOINTS='))?.slice('FERRY_FAILPOINTS='.length) ?? '';
}

/**
 * Registers before/after hooks for a describe nested in the one that called twoNodes: before it, the
 * daemons named in `fp` are restarted with those failpoints; after it, every daemon runs again and
 * without failpoints, migrations still under way are cancelled, every container is removed and so
 * are the files of ended migrations, so the next describe finds the cluster as new.
 */
export function onSharedCluster(n: TwoNodes, fp: Failpoints = {}): void {
  before(async () => {
    if (fp.manager) {
      await n.c.stopManager();
      await n.c.restartManager({ FERRY_FAILPOINTS: fp.manager });
    }
    for (const [h, names] of [[n.a, fp.a], [n.b, fp.b]] as const) {
      if (!names) continue;
      await h.stopAgent();
      await h.restartAgent({ FERRY_FAILPOINTS: names });
    }
  });
  after(async () => {
    if (!n.c) return;
    const { c } = n;
    const m = c.managerPid();
    if (m === undefined || failpointsOf(m) !== '') {
      await c.stopManager();
      await c.restartManager({ FERRY_FAILPOINTS: '' });
    }
    for (const h of c.hosts) {
      const pid = h.agentPid();
      if (pid !== undefined && failpointsOf(pid) === '') continue;
      await h.stopAgent();
      await h.restartAgent({ FERRY_FAILPOINTS: '' });
    }
    for (const x of (await c.client.migrations.list()).filter((y) => !TERMINAL.has(y.status.phase))) {
      await c.client.migrations.cancel(x.metadata.name).catch(() => undefined);
      await migrationEnd(c, x.metadata.name);
    }
    await Promise.all((await c.client.containers.list()).map((v) => c.client.containers.remove(v.container.metadata.name, { wait: true, force: true })));
    await until('no container on either host', () => {
      const left = c.hosts.flatMap((h) => runcIdsOn(h).map((x) => `${h.node}: ${x}`));
      if (left.length > 0) throw new Error(`still there: ${left.join(', ')}`);
      return true;
    }, 30_000);
    // Files of ended migrations that an agent keeps until it restarts (e.g. the CRIU work dir of a
    // post-copy source that rolled back) would show up in the next describe's checks: said and removed.
    for (const h of c.hosts) {
      for (const x of migrationFilesOn(h)) {
        process.stdout.write(`# ${h.node} kept the files of an ended migration: ${x} (removed before the next describe)\n`);
        rmSync(x, { recursive: true, force: true });
      }
    }
  });
}

/** The runc containers of one host. */
export function runcIdsOn(x: Pick<SimHostInfo, 'runcRoot'>): string[] {
  return existsSync(x.runcRoot) ? readdirSync(x.runcRoot).filter((n) => !n.startsWith('.')) : [];
}

/**
 * Where container `runtimeId` on host `x` lives in the cgroup-v1 hierarchies that limit it: per
 * controller, the pids in its cgroup, and its memory limit. A restored container must be in its own
 * cgroups with its limits (runc applies them; CRIU is told to leave cgroups alone).
 */
export function cgroupsOf(x: Pick<SimHostInfo, 'cgroupParent'>, runtimeId: string): { procs: Record<string, number[]>; memoryLimit: number } {
  const dir = (ctl: string): string => join('/sys/fs/cgroup', ctl, x.cgroupParent, runtimeId);
  const procs: Record<string, number[]> = {};
  for (const ctl of ['memory', 'pids', 'cpu', 'freezer']) {
    procs[ctl] = existsSync(dir(ctl)) ? readFileSync(join(dir(ctl), 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number).sort((p, q) => p - q) : [];
  }
  return { procs, memoryLimit: Number(readFileSync(join(dir('memory'), 'memory.limit_in_bytes'), 'utf8')) };
}

/** The restored processes are in the container's own cgroups on `x`, with its memory limit. */
export function assertOwnCgroups(x: Pick<SimHostInfo, 'cgroupParent'>, runtimeId: string, memoryMiB: number): void {
  const cg = cgroupsOf(x, runtimeId);
  assert.equal(cg.memoryLimit, memoryMiB * 1048576, 'the memory limit holds on the new node');
  assert.ok(cg.procs.memory!.length > 0, `processes in ${runtimeId}'s memory cgroup`);
  for (const ctl of ['pids', 'cpu', 'freezer']) assert.deepEqual(cg.procs[ctl], cg.procs.memory, `the ${ctl} cgroup holds the same processes`);
}

/** The files of migrations in one host's data dir (none when it has no migrations dir). */
export function migrationFilesOn(x: Pick<SimHostInfo, 'dataDir'>): string[] {
  const scratch = defaultScratchDir(resolve(x.dataDir));
  return [join(x.dataDir, 'migrations'), ...(scratch ? [scratch] : [])]
    .flatMap((dir) => (existsSync(dir) ? readdirSync(dir).filter((n) => n !== SCRATCH_OWNER_FILE).map((n) => join(dir, n)) : []));
}

/** Waits until container `name` runs with an overlay address, and returns that address. */
export async function ipOf(c: TestCluster, name: string): Promise<string> {
  const v = await until(`${name} to run with an address`, async () => {
    const cv = await c.client.containers.get(name);
    return cv.status?.phase === 'running' && cv.status.ip ? cv : undefined;
  });
  return v.status!.ip!;
}

/**
 * The sample app's counter at `addr` (its overlay address, with `:port` unless 80), read from inside
 * host A (each answered call counts one request). Refused or unanswered tries (the app still starting,
 * its address moving) are retried for up to `ms`; busybox wget's own -T crashes here, so `timeout`
 * bounds each try.
 */
export async function counterAt(c: TestCluster, addr: string, ms = 30_000): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    const r = await c.exec(0, ['timeout', '3', '/usr/bin/busybox', 'wget', '-q', '-O', '-', `http://${addr}/`]);
    if (r.code === 0) return (JSON.parse(r.stdout) as { count: number }).count;
    if (Date.now() - t0 > ms) throw new Error(`GET http://${addr}/ from ${c.hosts[0]!.node} kept failing for ${ms / 1000} s: exit ${r.code} ${r.stderr.trim()}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

/** Runs the sample app as `name` on `node` (`extra` goes before the image); returns its counter reader (the app listening on `port`). */
export async function runCounter(c: TestCluster, name: string, node: string, extra: string[] = [], port = 80): Promise<() => Promise<number>> {
  await c.ok(['run', '--name', name, '--node', node, ...extra, 'sample']);
  const ip = await ipOf(c, name);
  return () => counterAt(c, port === 80 ? ip : `${ip}:${port}`);
}

/** A running HTTP poller (test/support/http-poller.mjs) asking the sample app's counter again and again. */
export interface Poller {
  /** Stops it once the request in flight has ended; resolves with the counts answered, in order, and the failed tries. */
  stop(): Promise<{ counts: number[]; errors: string[]; code: number | null }>;
}

/** Starts the poller inside host `hostIndex` (0-based) against the sample app at `ip`, one request every `intervalMs`. */
export function startPoller(c: TestCluster, hostIndex: number, ip: string, intervalMs = 10): Poller {
  const script = join(ROOT, 'test', 'support', 'http-poller.mjs');
  const child = spawn('nsenter', [`--net=/run/netns/${c.hosts[hostIndex]!.netns}`, '--', process.execPath, script, ip, '80', String(intervalMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const counts: number[] = [];
  const errors: string[] = [];
  createInterface({ input: child.stdout }).on('line', (l) => {
    const e = JSON.parse(l) as { count?: number; error?: string; at?: string };
    if (typeof e.count === 'number') counts.push(e.count);
    else if (e.error) errors.push(`${e.at ?? ''} ${e.error}`);
  });
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  return {
    async stop() {
      child.kill('SIGTERM');
      return { counts, errors, code: await exited };
    },
  };
}

/** Migrates `name` to `to` expecting a rollback from `failedIn`; returns the migration. */
export async function migrateRolledBack(c: TestCluster, name: string, to: string, failedIn: string, extra: string[] = []): Promise<Migration> {
  const r = await c.cli(['-o', 'json', 'migrate', name, '--to', to, ...extra]);
  const m = JSON.parse(r.stdout) as Migration;
  assert.equal(r.code, 1);
  assert.equal(m.status.phase, 'RolledBack', JSON.stringify(m.status));
  assert.equal(m.status.failedIn, failedIn);
  return m;
}

/** Waits (up to 90 s) until migration `id` has ended, and returns it. */
export function migrationEnd(c: TestCluster, id: string): Promise<Migration> {
  return until('the migration to end', async () => {
    const x = await c.client.migrations.get(id);
    return TERMINAL.has(x.status.phase) ? x : undefined;
  }, 90_000);
}
