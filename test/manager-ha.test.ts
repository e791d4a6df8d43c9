/**
 * Control-plane HA: three `ferry manager` processes on a private 3-member etcd elect one leader; the
 * leader is killed with SIGKILL; another takes over; a client given all three URLs keeps working.
 * Prints the leader failover time (not asserted: it depends on the machine).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { FerryClient } from '../src/client/index.ts';
import { ROOT } from './support/ferry.ts';
import { freePort } from './support/net.ts';
import { skipUnlessEtcd, startEtcd, type TestEtcd } from './support/etcd.ts';

const FERRY = join(ROOT, 'bin/ferry');
const LEADER_TTL = 2;

/** Registers node `ha-node` holding image `sample` through the API, as an agent would (agents use this client). */
async function registerFakeNode(client: FerryClient): Promise<void> {
  await client.agent.register({
    name: 'ha-node', address: 'http://127.0.0.1:1', labels: {}, capacity: { cpus: 2, memoryBytes: 2 ** 31 }, agentVersion: 'test',
    facts: { hostname: 'ha-node', kernel: 'test', arch: 'amd64', os: 'linux', runc: 'test', criu: 'test', cgroupVersion: 2, overlay: true, cpuModel: 'test', cpuFlags: [] },
  });
  await client.agent.reportImages('ha-node', [{
    id: `sha256:${'0'.repeat(64)}`, tags: ['sample:latest'], size: 1, created: new Date(0).toISOString(), architecture: 'amd64', os: 'linux', layers: [],
    config: { entrypoint: [], cmd: ['true'], env: [], workingDir: '/', user: '', exposedPorts: [], labels: {} },
  }]);
}

interface Manager { name: string; url: string; child: ChildProcess; log: string }
interface LeaderStatus { name: string; role: 'leader' | 'standby'; leader: { name: string; url: string } | null }

describe('three managers on etcd: leader election and failover', { skip: skipUnlessEtcd() }, () => {
  let etcd: TestEtcd | undefined;
  let dir = '';
  const managers: Manager[] = [];
  const token = randomBytes(16).toString('hex');

  const status = async (m: Manager): Promise<LeaderStatus | undefined> => {
    try {
      const r = await fetch(`${m.url}/v1/manager/leader`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(1000) });
      return r.ok ? ((await r.json()) as LeaderStatus) : undefined;
    } catch {
      return undefined;
    }
  };
  const alive = (m: Manager): boolean => m.child.exitCode === null && m.child.signalCode === null;
  const logs = (): string => managers.map((m) => `--- ${m.name}\n${readFileSync(m.log, 'utf8').slice(-3000)}`).join('\n');

  /** The one live manager that says it leads, once every live manager agrees on it. */
  const agreedLeader = async (timeoutMs: number): Promise<Manager> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const live = managers.filter(alive);
      const seen = await Promise.all(live.map(status));
      const leaders = live.filter((_, i) => seen[i]?.role === 'leader');
      if (leaders.length === 1 && seen.every((s) => s?.leader?.name === leaders[0]?.name)) return leaders[0] as Manager;
      assert.ok(leaders.length <= 1, `two managers lead at once: ${leaders.map((l) => l.name).join(', ')}`);
      if (Date.now() > deadline) assert.fail(`no agreed leader after ${timeoutMs} ms: ${JSON.stringify(seen)}\n${logs()}`);
      await sleep(25);
    }
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ferry-ha-test-'));
    etcd = await startEtcd(3);
    const store = `etcd://${etcd.clientUrls.map((u) => u.slice('http://'.length)).join(',')}`;
    for (const name of ['m1', 'm2', 'm3']) {
      const port = await freePort();
      const log = join(dir, `${name}.log`);
      const fd = openSync(log, 'a');
      const child = spawn(FERRY, ['--home', join(dir, name), 'manager', '--host', '127.0.0.1', '--port', String(port), '--store', store, '--name', name, '--leader-ttl', String(LEADER_TTL)], {
        stdio: ['ignore', fd, fd], env: { ...process.env, FERRY_TOKEN: token, FERRY_API: '' },
      });
      closeSync(fd);
      managers.push({ name, url: `http://127.0.0.1:${port}`, child, log });
    }
    const deadline = Date.now() + 30_000;
    for (const m of managers) {
      while (!(await status(m))) {
        if (!alive(m) || Date.now() > deadline) assert.fail(`manager ${m.name} did not come up\n${logs()}`);
        await sleep(50);
      }
    }
  });

  after(async () => {
    const forced: string[] = [];
    for (const m of managers) {
      if (!alive(m) || m.child.pid === undefined) continue;
      const exited = new Promise<void>((resolve) => m.child.once('exit', () => resolve()));
      process.kill(m.child.pid, 'SIGTERM');
      if (!(await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]))) {
        forced.push(`manager ${m.name} pid ${m.child.pid}`);
        process.kill(m.child.pid, 'SIGKILL');
        await exited;
      }
    }
    forced.push(...((await etcd?.stop()) ?? []));
    if (dir) await rm(dir, { recursive: true, force: true });
    assert.deepEqual(forced, []);
  });

  it('elects one leader; after kill -9 of it another leads and a client with all URLs keeps working', async (t) => {
    const leader = await agreedLeader(15_000);
    const client = new FerryClient({ url: managers.map((m) => m.url).join(','), token });
    // Standbys refuse with NOT_LEADER, naming the leader in the body and a header.
    const standby = managers.find((m) => m !== leader) as Manager;
    const refused = await fetch(`${standby.url}/v1/containers`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get('x-ferry-leader'), leader.url);
    const body = (await refused.json()) as { code: string; details: { leader: string } };
    assert.equal(body.code, 'FERRY_ERR_NOT_LEADER');
    assert.equal(body.details.leader, leader.url);

    // A node that exists only as records (no agent): enough for the API to accept containers of its image.
    await registerFakeNode(client);
    await client.containers.create({ name: 'ha-before', image: 'sample' });
    assert.ok((await client.containers.list()).some((c) => c.container.metadata.name === 'ha-before'));

    const killedAt = performance.now();
    process.kill(leader.child.pid as number, 'SIGKILL');
    await new Promise<void>((resolve) => (alive(leader) ? leader.child.once('exit', () => resolve()) : resolve()));
    const next = await agreedLeader(LEADER_TTL * 1000 + 15_000);
    const electedAfter = performance.now() - killedAt;
    assert.notEqual(next.name, leader.name);

    // The client keeps its three URLs; calls fail only while nobody leads.
    const servedAfter = await (async () => {
      for (;;) {
        try {
          await client.containers.create({ name: 'ha-after', image: 'sample' });
          return performance.now() - killedAt;
        } catch (e) {
          if (performance.now() - killedAt > LEADER_TTL * 1000 + 15_000) throw e;
          await sleep(25);
        }
      }
    })();
    const names = (await client.containers.list()).map((c) => c.container.metadata.name).sort();
    assert.deepEqual(names.filter((n) => n.startsWith('ha-')), ['ha-after', 'ha-before']);
    const msg = `leader failover (lease TTL ${LEADER_TTL} s): ${leader.name} killed -> ${next.name} leads after ${Math.round(electedAfter)} ms; client served after ${Math.round(servedAfter)} ms`;
    t.diagnostic(msg);
  });
});
