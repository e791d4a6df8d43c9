import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { openStore, storeErrors, type Store } from '../store/index.ts';
import { EtcdStore } from '../store/etcd.ts';
import { LEADER_KEY, LeaderElection, type LeaderInfo } from './leader.ts';
import { skipUnlessEtcd, startEtcd, type TestEtcd } from '../../test/support/etcd.ts';

/** An election that records what happened to it, in order, with times. */
class Candidate {
  readonly events: { what: 'elected' | 'deposed'; at: number; reason?: string }[] = [];
  readonly election: LeaderElection;
  constructor(store: Store, readonly name: string, ttlSeconds = 1) {
    this.election = new LeaderElection({
      store, name, url: `http://${name}.test:7670`, ttlSeconds,
      onElected: () => { this.events.push({ what: 'elected', at: performance.now() }); },
      onDeposed: (reason) => { this.events.push({ what: 'deposed', at: performance.now(), reason }); },
    });
  }
  at(what: 'elected' | 'deposed'): number | undefined {
    return this.events.find((e) => e.what === what)?.at;
  }
}

async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A store whose calls (but watches) can be made to fail, as when the leader is cut off from it. */
function cuttable(store: Store): { store: Store; cut(): void; heal(): void } {
  let cut = false;
  const wrapped = new Proxy(store, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      const fn = (v as (...a: unknown[]) => unknown).bind(target);
      if (prop === 'close' || prop === 'watch') return fn;
      return async (...args: unknown[]) => {
        if (cut) throw storeErrors.STORE_UNAVAILABLE({ backend: 'test', location: 'cut', reason: 'partitioned' });
        return fn(...args);
      };
    },
  });
  return { store: wrapped, cut: () => { cut = true; }, heal: () => { cut = false; } };
}

describe('leader election on the memory store', () => {
  it('elects exactly one leader; standbys know it; a resignation hands over at once', async () => {
    const store = await openStore('memory:');
    const [a, b, c] = ['m1', 'm2', 'm3'].map((n) => new Candidate(store, n, 5)) as [Candidate, Candidate, Candidate];
    try {
      for (const x of [a, b, c]) x.election.start();
      await until(() => [a, b, c].some((x) => x.election.isLeader()), 'a leader');
      await sleep(100);
      const leaders = [a, b, c].filter((x) => x.election.isLeader());
      assert.equal(leaders.length, 1);
      const leader = leaders[0] as Candidate;
      const held = (await store.get<LeaderInfo>(LEADER_KEY))?.value;
      assert.equal(held?.name, leader.name);
      assert.equal(held?.url, `http://${leader.name}.test:7670`);
      for (const x of [a, b, c]) await until(() => x.election.leader()?.name === leader.name, `${x.name} to know the leader`);
      const t0 = performance.now();
      await leader.election.stop();
      assert.deepEqual(leader.events.map((e) => e.what), ['elected', 'deposed']);
      const rest = [a, b, c].filter((x) => x !== leader);
      await until(() => rest.some((x) => x.election.isLeader()), 'a new leader');
      const next = rest.find((x) => x.election.isLeader()) as Candidate;
      // Handed over by deleting the key, not by waiting out the 5 s lease.
      assert.ok((next.at('elected') as number) - t0 < 2_000);
      assert.ok((leader.at('deposed') as number) < (next.at('elected') as number));
    } finally {
      for (const x of [a, b, c]) await x.election.stop();
      await store.close();
    }
  });

  it('a leader that cannot renew steps down before a standby takes over', async () => {
    const store = await openStore('memory:');
    const cutA = cuttable(store);
    const a = new Candidate(cutA.store, 'a', 1);
    const b = new Candidate(store, 'b', 1);
    try {
      a.election.start();
      await until(() => a.election.isLeader(), 'a to lead');
      b.election.start();
      await until(() => b.election.leader()?.name === 'a', 'b to follow a');
      cutA.cut();
      await until(() => b.election.isLeader(), 'b to take over');
      const deposed = a.at('deposed');
      assert.ok(deposed !== undefined, 'a stepped down');
      assert.match(a.events[1]?.reason ?? '', /no lease renewal/);
      assert.ok(deposed < (b.at('elected') as number), `a stepped down ${Math.round((b.at('elected') as number) - deposed)} ms before b took over`);
      assert.equal(a.election.isLeader(), false);
    } finally {
      await a.election.stop();
      await b.election.stop();
      await store.close();
    }
  });

  it('a leader whose key is deleted steps down, and the role is taken again', async () => {
    const store = await openStore('memory:');
    const a = new Candidate(store, 'a', 1);
    const b = new Candidate(store, 'b', 1);
    try {
      a.election.start();
      await until(() => a.election.isLeader(), 'a to lead');
      b.election.start();
      await until(() => b.election.leader()?.name === 'a', 'b to follow a');
      // Deleting the key as an admin would: a notices it is no longer leader, b takes over.
      const kv = await store.get(LEADER_KEY);
      await store.delete(LEADER_KEY, kv?.modRevision);
      await until(() => b.election.isLeader() || a.election.isLeader(), 'a leader again');
      await until(() => a.events.some((e) => e.what === 'deposed'), 'a to step down');
    } finally {
      await a.election.stop();
      await b.election.stop();
      await store.close();
    }
  });
});

describe('leader election on a private etcd', { skip: skipUnlessEtcd() }, () => {
  let etcd: TestEtcd | undefined;
  before(async () => { etcd = await startEtcd(1); });
  after(async () => { assert.deepEqual((await etcd?.stop()) ?? [], []); });

  it('elects one of two managers, hands over on resignation and after a lost lease', async () => {
    const urls = (etcd as TestEtcd).clientUrls;
    const sa = new EtcdStore({ endpoints: urls });
    const sb = new EtcdStore({ endpoints: urls });
    const cutA = cuttable(sa);
    const a = new Candidate(cutA.store, 'a', 1);
    const b = new Candidate(sb, 'b', 1);
    try {
      a.election.start();
      await until(() => a.election.isLeader(), 'a to lead');
      b.election.start();
      await until(() => b.election.leader()?.name === 'a', 'b to follow a');
      assert.equal(b.election.isLeader(), false);
      cutA.cut();
      await until(() => b.election.isLeader(), 'b to take over after a lost its lease');
      assert.ok((a.at('deposed') as number) < (b.at('elected') as number));
      cutA.heal();
      await until(() => a.election.leader()?.name === 'b', 'a to follow b');
      assert.equal(a.election.isLeader(), false);
      await b.election.stop();
      await until(() => a.election.isLeader(), 'a to lead again after b resigned');
      assert.deepEqual(a.events.map((e) => e.what), ['elected', 'deposed', 'elected']);
    } finally {
      await a.election.stop();
      await b.election.stop();
      await sa.close();
      await sb.close();
    }
  });
});
