/** Conformance cases for leases. TTLs are 1 s so the whole suite stays within a few seconds. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { OpenStore } from './conformance-kit.ts';
import { eventually, rejectsWith, sleep, withStore, withTap } from './conformance-kit.ts';

/** Registers the lease cases. */
export function leaseCases(open: OpenStore): void {
  it('deletes the keys of an expired lease, with delete events, and then refuses keep-alives', () =>
    withStore(open, async (s) => {
      const lease = await s.grantLease(1);
      assert.equal(lease.ttl, 1);
      const a = await s.create('/l/a', 'a', { lease: lease.id });
      await s.create('/l/b', 'b', { lease: lease.id });
      await s.create('/l/keep', 'k');
      assert.equal(a.lease, lease.id);
      await withTap(s, '/l/', {}, async (tap) => {
        const events = await tap.take(2);
        assert.deepEqual(events.map((e) => [e.type, e.kv.key]).sort(), [['delete', '/l/a'], ['delete', '/l/b']]);
        assert.deepEqual(events.find((e) => e.kv.key === '/l/a')?.prevKv, a);
      });
      assert.equal(await s.get('/l/a'), undefined);
      assert.equal((await s.get('/l/keep'))?.value, 'k');
      await rejectsWith(s.keepAlive(lease.id), 'STORE_LEASE_NOT_FOUND', 404, String(lease.id));
      await rejectsWith(s.create('/l/late', 1, { lease: lease.id }), 'STORE_LEASE_NOT_FOUND', 404);
    }));

  it('keeps keys while the lease is kept alive, and revoking deletes them at once', () =>
    withStore(open, async (s) => {
      const lease = await s.grantLease(1);
      await s.create('/ka/k', 1, { lease: lease.id });
      // Four renewals 400 ms apart outlive the 1 s TTL 1.6 times over.
      for (let i = 0; i < 4; i++) {
        await sleep(400);
        assert.deepEqual(await s.keepAlive(lease.id), { id: lease.id, ttl: 1 });
      }
      assert.equal((await s.get('/ka/k'))?.value, 1);
      await withTap(s, '/ka/', {}, async (tap) => {
        await s.revokeLease(lease.id);
        assert.equal(await s.get('/ka/k'), undefined);
        const e = await tap.next();
        assert.equal(e.type, 'delete');
        assert.equal(e.kv.key, '/ka/k');
      });
      await s.revokeLease(lease.id); // already gone: no error
      await rejectsWith(s.keepAlive(lease.id), 'STORE_LEASE_NOT_FOUND', 404);
    }));

  it('refuses unknown leases', () =>
    withStore(open, async (s) => {
      await rejectsWith(s.keepAlive(987654), 'STORE_LEASE_NOT_FOUND', 404, '987654');
      await rejectsWith(s.create('/nl', 1, { lease: 987654 }), 'STORE_LEASE_NOT_FOUND', 404);
      assert.equal(await s.get('/nl'), undefined);
      await s.revokeLease(987654);
    }));

  it('keeps a key\'s lease on update unless told otherwise; lease 0 detaches', () =>
    withStore(open, async (s) => {
      const lease = await s.grantLease(60);
      const other = await s.grantLease(60);
      const a = await s.create('/lu/a', 1, { lease: lease.id });
      const b = await s.create('/lu/b', 1, { lease: lease.id });
      const c = await s.create('/lu/c', 1);
      assert.equal((await s.update('/lu/a', 2, a.modRevision)).lease, lease.id);
      assert.equal((await s.update('/lu/b', 2, b.modRevision, { lease: 0 })).lease, 0);
      assert.equal((await s.update('/lu/c', 2, c.modRevision, { lease: other.id })).lease, other.id);
      await s.revokeLease(lease.id);
      assert.equal(await s.get('/lu/a'), undefined);
      assert.equal((await s.get('/lu/b'))?.value, 2);
      await s.revokeLease(other.id);
      assert.equal(await s.get('/lu/c'), undefined);
    }));

  it('expires several leases independently', () =>
    withStore(open, async (s) => {
      const short = await s.grantLease(1);
      const long = await s.grantLease(60);
      await s.create('/multi/short', 1, { lease: short.id });
      await s.create('/multi/long', 1, { lease: long.id });
      await eventually(async () => (await s.get('/multi/short')) === undefined, 'the short lease to expire');
      assert.equal((await s.get('/multi/long'))?.value, 1);
      await s.keepAlive(long.id);
      await s.revokeLease(long.id);
    }));
}
