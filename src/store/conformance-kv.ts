/** Conformance cases for reads and writes: create, get, list, update, delete, revisions, CAS races. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { OpenStore } from './conformance-kit.ts';
import { rejectsWith, withStore } from './conformance-kit.ts';

/** Registers the key-value cases. */
export function kvCases(open: OpenStore): void {
  it('creates and gets keys with JSON values and revisions', () =>
    withStore(open, async (s) => {
      const r0 = await s.revision();
      const value = { name: 'web', ports: [80, 443], nested: { ok: true, none: null }, text: 'é ✓ 𝄞' };
      const kv = await s.create('/c/web', value);
      assert.deepEqual(kv, { key: '/c/web', value, createRevision: r0 + 1, modRevision: r0 + 1, version: 1, lease: 0 });
      assert.deepEqual(await s.get('/c/web'), kv);
      assert.equal(await s.get('/c/nope'), undefined);
      for (const v of ['text', 42, 0, null, false, [1, 'two']]) {
        const k = `/scalar/${JSON.stringify(v)}`;
        await s.create(k, v);
        assert.deepEqual((await s.get(k))?.value, v);
      }
    }));

  it('hands out private copies of values', () =>
    withStore(open, async (s) => {
      const value = { list: [1] };
      await s.create('/copy', value);
      value.list.push(2);
      const got = await s.get<{ list: number[] }>('/copy');
      assert.deepEqual(got?.value, { list: [1] });
      got?.value.list.push(3);
      assert.deepEqual((await s.get('/copy'))?.value, { list: [1] });
    }));

  it('lists by prefix, sorted, at one revision, honouring prefix boundaries and limit', () =>
    withStore(open, async (s) => {
      for (const k of ['/a/2', '/b', '/a/1', '/ab', '/a', '/a/1/x', '/a/3']) await s.create(k, k);
      await s.delete('/a/3');
      const keys = async (prefix: string, limit?: number) => (await s.list(prefix, { limit })).items.map((i) => i.key);
      assert.deepEqual(await keys('/a/'), ['/a/1', '/a/1/x', '/a/2']);
      assert.deepEqual(await keys('/a'), ['/a', '/a/1', '/a/1/x', '/a/2', '/ab']);
      assert.deepEqual(await keys(''), ['/a', '/a/1', '/a/1/x', '/a/2', '/ab', '/b']);
      assert.deepEqual(await keys('/a/', 2), ['/a/1', '/a/1/x']);
      assert.deepEqual(await keys('/zzz'), []);
      const listed = await s.list('/a/');
      assert.equal(listed.revision, await s.revision());
      assert.deepEqual(listed.items[0], await s.get('/a/1'));
    }));

  it('refuses to create an existing key and allows it again after a delete', () =>
    withStore(open, async (s) => {
      const first = await s.create('/x', 1);
      await rejectsWith(s.create('/x', 2), 'STORE_EXISTS', 409, '/x');
      assert.equal((await s.get('/x'))?.value, 1);
      await s.delete('/x');
      const again = await s.create('/x', 3);
      assert.equal(again.version, 1);
      assert.ok(again.createRevision > first.createRevision);
      assert.equal(again.createRevision, again.modRevision);
    }));

  it('updates only at the expected modRevision', () =>
    withStore(open, async (s) => {
      const created = await s.create('/u', 'v1');
      const updated = await s.update('/u', 'v2', created.modRevision);
      assert.equal(updated.value, 'v2');
      assert.equal(updated.version, 2);
      assert.equal(updated.createRevision, created.createRevision);
      assert.equal(updated.modRevision, created.modRevision + 1);
      await rejectsWith(s.update('/u', 'stale', created.modRevision), 'STORE_CONFLICT', 409, '/u');
      assert.deepEqual(await s.get('/u'), updated);
      const third = await s.update('/u', 'v3', updated.modRevision);
      assert.equal(third.version, 3);
    }));

  it('refuses to update a missing or deleted key', () =>
    withStore(open, async (s) => {
      await rejectsWith(s.update('/missing', 1, 1), 'STORE_NOT_FOUND', 404, '/missing');
      const kv = await s.create('/gone', 1);
      await s.delete('/gone');
      await rejectsWith(s.update('/gone', 2, kv.modRevision), 'STORE_NOT_FOUND', 404, '/gone');
    }));

  it('deletes with and without a revision and returns the deleted key', () =>
    withStore(open, async (s) => {
      const a = await s.create('/d/a', 'a');
      assert.deepEqual(await s.delete('/d/a'), a);
      assert.equal(await s.get('/d/a'), undefined);
      const b = await s.create('/d/b', 'b');
      const b2 = await s.update('/d/b', 'b2', b.modRevision);
      await rejectsWith(s.delete('/d/b', b.modRevision), 'STORE_CONFLICT', 409, '/d/b');
      assert.deepEqual(await s.get('/d/b'), b2);
      assert.deepEqual(await s.delete('/d/b', b2.modRevision), b2);
      await rejectsWith(s.delete('/d/b'), 'STORE_NOT_FOUND', 404, '/d/b');
      await rejectsWith(s.delete('/never'), 'STORE_NOT_FOUND', 404, '/never');
    }));

  it('moves the revision by exactly one per write and not on reads, failures or leases', () =>
    withStore(open, async (s) => {
      const r0 = await s.revision();
      const a = await s.create('/r/a', 1);
      assert.equal(a.modRevision, r0 + 1);
      const a2 = await s.update('/r/a', 2, a.modRevision);
      assert.equal(a2.modRevision, r0 + 2);
      await s.get('/r/a');
      await s.list('/r/');
      await rejectsWith(s.create('/r/a', 3), 'STORE_EXISTS');
      await rejectsWith(s.update('/r/a', 3, a.modRevision), 'STORE_CONFLICT');
      await s.grantLease(60);
      assert.equal(await s.revision(), r0 + 2);
      await s.delete('/r/a');
      assert.equal(await s.revision(), r0 + 3);
      const b = await s.create('/r/b', 1);
      assert.equal(b.modRevision, r0 + 4);
    }));

  it('lets exactly one of many parallel compare-and-swaps win', () =>
    withStore(open, async (s) => {
      const kv = await s.create('/race', 0);
      const results = await Promise.allSettled(Array.from({ length: 16 }, (_, i) => s.update('/race', i + 1, kv.modRevision)));
      const won = results.filter((r) => r.status === 'fulfilled');
      assert.equal(won.length, 1);
      for (const r of results) if (r.status === 'rejected') await rejectsWith(Promise.reject(r.reason), 'STORE_CONFLICT');
      assert.deepEqual(await s.get('/race'), (won[0] as PromiseFulfilledResult<unknown>).value);
      const creates = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => s.create('/race-create', i)));
      assert.equal(creates.filter((r) => r.status === 'fulfilled').length, 1);
    }));

  it('rejects invalid keys, values and arguments with STORE_INVALID', () =>
    withStore(open, async (s) => {
      await rejectsWith(s.create('', 1), 'STORE_INVALID', 400);
      await rejectsWith(s.create('/bad\uD800', 1), 'STORE_INVALID', 400);
      await rejectsWith(s.create('/undef', undefined), 'STORE_INVALID', 400, '/undef');
      await rejectsWith(s.create('/big', 1n), 'STORE_INVALID', 400, '/big');
      await rejectsWith(s.create('/fn', () => 1), 'STORE_INVALID', 400);
      await rejectsWith(s.grantLease(0), 'STORE_INVALID', 400);
      await rejectsWith(s.list('/', { limit: -1 }), 'STORE_INVALID', 400);
      assert.equal(await s.get('/undef'), undefined);
    }));
}
