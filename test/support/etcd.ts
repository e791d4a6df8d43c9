/**
 * A private etcd for tests: one or three members on loopback with random free ports and a fresh data
 * directory, stopped by PID and removed by `stop()` (call it from `after`, it is safe to call twice).
 * Short raft timings keep elections quick and let 1 s leases exist (etcd raises TTLs below
 * 1.5 election timeouts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './net.ts';
import { IN_CI } from './prereq.ts';

/** The etcd binary tests run. */
export const ETCD_BIN = process.env.FERRY_TEST_ETCD ?? '/usr/bin/etcd';

/** A running private etcd cluster. */
export interface TestEtcd {
  /** Client URLs, one per member. */
  readonly clientUrls: string[];
  /** PIDs of the members, in the same order. */
  readonly pids: number[];
  /** Kills every member still running (by PID) and removes the data directory; reports what it had to kill hard. */
  stop(): Promise<string[]>;
}

/** Why etcd cannot run here, or undefined when it can. */
export function etcdMissing(): string | undefined {
  try {
    readFileSync(ETCD_BIN);
    return undefined;
  } catch {
    return `needs etcd at ${ETCD_BIN} (scripts/setup installs etcd-server)`;
  }
}

/** For `describe(…, { skip })`: the reason to skip outside CI, or false (under CI a missing etcd fails instead). */
export function skipUnlessEtcd(): string | false {
  return IN_CI ? false : etcdMissing() ?? false;
}

async function waitHealthy(url: string, child: ChildProcess, log: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`etcd at ${url} exited (${child.exitCode ?? child.signalCode}); log: ${readFileSync(log, 'utf8').slice(-2000)}`);
    }
    try {
      const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
      if (r.ok && ((await r.json()) as { health?: string }).health === 'true') return;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) throw new Error(`etcd at ${url} not healthy after 20 s; log: ${readFileSync(log, 'utf8').slice(-2000)}`);
    await sleep(50);
  }
}

/** The index in `urls` (client URLs) of the member that leads the raft group now; waits up to 20 s for one. */
export async function raftLeader(urls: string[]): Promise<number> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    for (const [i, url] of urls.entries()) {
      const r = await fetch(`${url}/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(1000) }).catch(() => undefined);
      const status = r?.ok ? ((await r.json()) as { header?: { member_id?: string }; leader?: string }) : undefined;
      if (status?.leader !== undefined && status.header?.member_id === status.leader) return i;
    }
    await sleep(100);
  }
  throw new Error('no etcd member led within 20 s');
}

/** Starts a private etcd of `members` members (1 or 3) and waits until every member is healthy. */
export async function startEtcd(members = 1): Promise<TestEtcd> {
  const why = etcdMissing();
  if (why) throw new Error(`prerequisite missing${IN_CI ? ' under CI' : ''}: ${why}`);
  const dir = await mkdtemp(join(tmpdir(), 'ferry-etcd-test-'));
  const children: ChildProcess[] = [];
  const stop = async (): Promise<string[]> => {
    const forced: string[] = [];
    for (const c of children) {
      if (c.exitCode !== null || c.signalCode !== null || c.pid === undefined) continue;
      const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
      process.kill(c.pid, 'SIGTERM');
      const ok = await Promise.race([exited.then(() => true), sleep(5000).then(() => false)]);
      if (!ok) {
        forced.push(`etcd pid ${c.pid}`);
        try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone meanwhile */ }
        await exited;
      }
    }
    await rm(dir, { recursive: true, force: true });
    return forced;
  };
  try {
    const ports = await Promise.all(Array.from({ length: members * 2 }, () => freePort()));
    const names = Array.from({ length: members }, (_, i) => `m${i}`);
    const peer = (i: number): string => `http://127.0.0.1:${ports[2 * i + 1]}`;
    const client = (i: number): string => `http://127.0.0.1:${ports[2 * i]}`;
    const cluster = names.map((n, i) => `${n}=${peer(i)}`).join(',');
    // Raft timings: 1 member can be tight; 3 members on a busy test machine need more slack.
    const [heartbeat, election] = members === 1 ? ['10', '100'] : ['50', '500'];
    for (let i = 0; i < members; i++) {
      const log = join(dir, `${names[i]}.log`);
      const fd = openSync(log, 'a');
      const child = spawn(ETCD_BIN, [
        '--name', names[i] as string, '--data-dir', join(dir, names[i] as string),
        '--listen-client-urls', client(i), '--advertise-client-urls', client(i),
        '--listen-peer-urls', peer(i), '--initial-advertise-peer-urls', peer(i),
        '--initial-cluster', cluster, '--initial-cluster-state', 'new', '--initial-cluster-token', `ferry-test-${process.pid}`,
        '--heartbeat-interval', heartbeat, '--election-timeout', election, '--log-level', 'warn',
      ], { stdio: ['ignore', fd, fd] });
      closeSync(fd);
      children.push(child);
    }
    await Promise.all(children.map((c, i) => waitHealthy(client(i), c, join(dir, `${names[i]}.log`))));
    return { clientUrls: names.map((_, i) => client(i)), pids: children.map((c) => c.pid as number), stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
