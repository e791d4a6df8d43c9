import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { EtcdStore } from './etcd.ts';
import { runStoreConformance } from './conformance.ts';
import { Tap, rejectsWith, within } from './conformance-kit.ts';
import { freePort } from '../../test/support/net.ts';
import { raftLeader, skipUnlessEtcd, startEtcd, type TestEtcd } from '../../test/support/etcd.ts';
import { startFaultProxy } from '../../test/support/etcd-fault-proxy.ts';

let etcd: TestEtcd | undefined;
let n = 0;
// Each store gets a key prefix of its own, so every case starts from an empty keyspace on one etcd;
// revisions are etcd's (shared), which the suite only compares relative to what it read.
const fresh = (urls: string[]): EtcdStore => new EtcdStore({ endpoints: urls, keyPrefix: `/t${++n}-${randomBytes(4).toString('hex')}` });

describe('etcd backend (private etcd)', { skip: skipUnlessEtcd() }, () => {
  before(async () => {
    etcd = await startEtcd(1);
  });
  after(async () => {
    const forced = await etcd?.stop();
    assert.deepEqual(forced ?? [], []);
  });

  runStoreConformance('etcd', async () => ({ store: fresh((etcd as TestEtcd).clientUrls), cleanup: async () => {} }));

  describe('etcd specifics', () => {
    it('fails over to the next endpoint when the first cannot be reached', async () => {
      const dead = `http://127.0.0.1:${await freePort()}`;
      const s = fresh([dead, ...(etcd as TestEtcd).clientUrls]);
      try {
        const kv = await s.create('/fo', 1);
        assert.equal((await s.get('/fo'))?.modRevision, kv.modRevision);
        const tap = new Tap(s, '/fo');
        try {
          await s.update('/fo', 2, kv.modRevision);
          assert.equal((await tap.next()).kv.value, 2);
        } finally {
          tap.stop();
        }
      } finally {
        await s.close();
      }
    });

    it('answers STORE_UNAVAILABLE naming the endpoints when no etcd answers', async () => {
      const dead = `http://127.0.0.1:${await freePort()}`;
      const s = new EtcdStore({ endpoints: [dead] });
      try {
        await rejectsWith(s.get('/x'), 'STORE_UNAVAILABLE', 503, dead);
        await rejectsWith(s.create('/x', 1), 'STORE_UNAVAILABLE', 503, 'ECONNREFUSED');
      } finally {
        await s.close();
      }
    });

    it('a write whose answer an election lost is sent again and counts once; its key tells whether it landed', async () => {
      const proxy = await startFaultProxy((etcd as TestEtcd).clientUrls[0] as string);
      const prefix = `/lost-${randomBytes(4).toString('hex')}`;
      const s = new EtcdStore({ endpoints: [proxy.url], keyPrefix: prefix });
      const other = new EtcdStore({ endpoints: (etcd as TestEtcd).clientUrls, keyPrefix: prefix });
      try {
        // Applied, answer lost ("request timed out"): the second send's compare fails on our own value.
        proxy.faults.push('applied-then-timeout');
        const a = await s.create('/a', { uid: 'u1' });
        assert.deepEqual([a.value, a.version, proxy.forwarded()], [{ uid: 'u1' }, 1, 2]);
        assert.equal((await other.get('/a'))?.modRevision, a.modRevision);
        // Applied, connection cut: the same for an update.
        proxy.faults.push('applied-then-cut');
        const a2 = await s.update('/a', { uid: 'u1', n: 2 }, a.modRevision);
        assert.deepEqual([a2.value, a2.version, a2.createRevision], [{ uid: 'u1', n: 2 }, 2, a.createRevision]);
        assert.equal((await other.get('/a'))?.modRevision, a2.modRevision);
        // Refused twice before etcd saw it ("no leader"): applied by the third send, once.
        proxy.faults.push('no-leader', 'no-leader');
        const before = proxy.forwarded();
        const b = await s.create('/b', 'v');
        assert.deepEqual([b.version, proxy.forwarded() - before, (await other.get('/b'))?.version], [1, 1, 1]);
        // Someone else's key is still someone else's after an uncertain send: EXISTS and CONFLICT as ever.
        await other.create('/c', 'theirs');
        proxy.faults.push('no-leader');
        await rejectsWith(s.create('/c', 'mine'), 'STORE_EXISTS', 409, '/c');
        proxy.faults.push('applied-then-timeout');
        const c2 = await other.get('/c');
        await other.update('/c', 'theirs again', c2?.modRevision as number);
        await rejectsWith(s.update('/c', 'mine', c2?.modRevision as number), 'STORE_CONFLICT', 409, '/c');
        assert.equal((await other.get('/c'))?.value, 'theirs again');
      } finally {
        await s.close();
        await other.close();
        await proxy.close();
      }
    });

    it('picks another lease id when the one it chose is taken', async () => {
      const ids = [2 ** 40 + 7, 2 ** 40 + 7, 2 ** 40 + 9];
      class Scripted extends EtcdStore {
        protected override newLeaseId(): number {
          return ids.shift() ?? assert.fail('asked for more ids than scripted');
        }
      }
      const s = new Scripted({ endpoints: (etcd as TestEtcd).clientUrls });
      try {
        assert.equal((await s.grantLease(30)).id, 2 ** 40 + 7);
        assert.equal((await s.grantLease(30)).id, 2 ** 40 + 9);
        assert.deepEqual(ids, []);
        await s.revokeLease(2 ** 40 + 7);
        await s.revokeLease(2 ** 40 + 9);
      } finally {
        await s.close();
      }
    });

    it('hands out lease ids JavaScript holds exactly, and sees another client\'s writes', async () => {
      const urls = (etcd as TestEtcd).clientUrls;
      const prefix = `/shared-${randomBytes(4).toString('hex')}`;
      const a = new EtcdStore({ endpoints: urls, keyPrefix: prefix });
      const b = new EtcdStore({ endpoints: urls, keyPrefix: prefix });
      try {
        const lease = await a.grantLease(30);
        assert.ok(Number.isSafeInteger(lease.id) && lease.id > 0);
        // Another client's writes are ordered only by revision: watch from one read before the write.
        const tap = new Tap(b, '/k', { afterRevision: await b.revision() });
        try {
          await a.create('/k', 'v', { lease: lease.id });
          const e = await within(tap.next(), 'b to see a\'s write');
          assert.equal(e.kv.lease, lease.id);
          await a.revokeLease(lease.id);
          assert.equal((await tap.next()).type, 'delete');
        } finally {
          tap.stop();
        }
      } finally {
        await a.close();
        await b.close();
      }
    });
  });
});

describe('etcd backend on a 3-member cluster', { skip: skipUnlessEtcd() }, () => {
  let cluster: TestEtcd | undefined;
  before(async () => {
    cluster = await startEtcd(3);
  });
  after(async () => {
    assert.deepEqual((await cluster?.stop()) ?? [], []);
  });

  it('keeps serving and watching without a gap when the raft leader is killed, and each write lands once', async () => {
    const c = cluster as TestEtcd;
    const s = new EtcdStore({ endpoints: c.clientUrls, keyPrefix: `/m3-${randomBytes(4).toString('hex')}` });
    const tap = new Tap<number>(s, '/n/');
    try {
      await s.create('/n/0', 0);
      assert.equal((await tap.next()).kv.value, 0);
      // Kill the leader (the other two keep quorum and elect another): writes sent meanwhile get
      // "no leader" or lose their answers, and the store must settle each one itself.
      const victim = await raftLeader(c.clientUrls);
      process.kill(c.pids[victim] as number, 'SIGKILL');
      const written: number[] = [];
      for (let i = 1; i <= 5; i++) {
        const kv = await s.create(`/n/${i}`, i);
        assert.equal(kv.version, 1);
        written.push(i);
      }
      const seen: number[] = [];
      while (seen.length < written.length) seen.push((await tap.next()).kv.value);
      assert.deepEqual(seen, written);
      assert.deepEqual((await s.list<number>('/n/')).items.map((i) => i.value), [0, 1, 2, 3, 4, 5]);
    } finally {
      tap.stop();
      await s.close();
    }
  });
});
