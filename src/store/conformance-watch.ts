/** Conformance cases for watches, compaction and closing. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { OpenStore } from './conformance-kit.ts';
import { Tap, brief, rejectsWith, within, withStore, withTap } from './conformance-kit.ts';

/** Registers the watch cases. */
export function watchCases(open: OpenStore): void {
  it('replays history after a revision, then delivers live events in order with prevKv', () =>
    withStore(open, async (s) => {
      const r0 = await s.revision();
      const a = await s.create('/w/a', 'a1');
      const a2 = await s.update('/w/a', 'a2', a.modRevision);
      await s.create('/other/x', 'x');
      await s.delete('/w/a');
      await s.create('/w/b', 'b1');
      await withTap(s, '/w/', { afterRevision: r0 }, async (tap) => {
        assert.deepEqual((await tap.take(4)).map(brief), [
          { type: 'put', key: '/w/a', revision: r0 + 1, value: 'a1' },
          { type: 'put', key: '/w/a', revision: r0 + 2, value: 'a2', prev: 'a1' },
          { type: 'delete', key: '/w/a', revision: r0 + 4, value: 'a2', prev: 'a2' },
          { type: 'put', key: '/w/b', revision: r0 + 5, value: 'b1' },
        ]);
        const b = await s.get('/w/b');
        await s.update('/w/b', 'b2', b?.modRevision ?? 0);
        await s.create('/w/c', 'c1');
        const live = await tap.take(2);
        assert.deepEqual(live.map(brief), [
          { type: 'put', key: '/w/b', revision: r0 + 6, value: 'b2', prev: 'b1' },
          { type: 'put', key: '/w/c', revision: r0 + 7, value: 'c1' },
        ]);
        assert.deepEqual(live[0]?.prevKv, b);
        assert.equal(live[0]?.kv.version, 2);
      });
      // From the middle of history: the first event is the one right after that revision.
      await withTap(s, '/w/', { afterRevision: a2.modRevision }, async (tap) => {
        assert.deepEqual(brief(await tap.next()), { type: 'delete', key: '/w/a', revision: r0 + 4, value: 'a2', prev: 'a2' });
      });
    }));

  it('reports a delete with the deleted key as kv and prevKv', () =>
    withStore(open, async (s) => {
      const kv = await s.create('/del/k', { n: 1 });
      await withTap(s, '/del/', {}, async (tap) => {
        await s.delete('/del/k');
        const e = await tap.next();
        assert.equal(e.type, 'delete');
        assert.equal(e.revision, kv.modRevision + 1);
        assert.deepEqual(e.prevKv, kv);
        assert.equal(e.kv.key, '/del/k');
        assert.equal(e.kv.modRevision, e.revision);
        assert.deepEqual(e.kv.value, { n: 1 });
      });
    }));

  it('watches only its prefix and starts at the revision of the watch call by default', () =>
    withStore(open, async (s) => {
      await s.create('/p/before', 0);
      await withTap(s, '/p/', {}, async (tap) => {
        // Written after watch() but before the first next(): must still be seen.
        await s.create('/p/early', 1);
        await s.create('/pq', 2);
        await s.create('/q/p/', 3);
        await s.create('/p/late', 4);
        assert.deepEqual((await tap.take(2)).map((e) => e.kv.key), ['/p/early', '/p/late']);
      });
    }));

  it('ends a watch when its signal aborts, also one that is waiting', () =>
    withStore(open, async (s) => {
      const tap = new Tap(s, '/abort/');
      const pending = tap.pull();
      tap.stop();
      assert.deepEqual(await within(pending, 'the aborted watch to end'), { done: true, value: undefined });
      const aborted = new AbortController();
      aborted.abort();
      const it = s.watch('/abort/', { signal: aborted.signal })[Symbol.asyncIterator]();
      assert.equal((await within(it.next(), 'a pre-aborted watch to end')).done, true);
    }));

  it('ends a watch when the consumer breaks out of its loop', () =>
    withStore(open, async (s) => {
      const r0 = await s.revision();
      await s.create('/brk/a', 1);
      await s.create('/brk/b', 2);
      const seen: string[] = [];
      await within(
        (async () => {
          for await (const e of s.watch('/brk/', { afterRevision: r0 })) {
            seen.push(e.kv.key);
            break;
          }
        })(),
        'the loop to end',
      );
      assert.deepEqual(seen, ['/brk/a']);
    }));

  it('ends open watches on close and refuses work afterwards', async () => {
    const { store: s, cleanup } = await open();
    try {
      const tap = new Tap(s, '/close/');
      const pending = tap.pull();
      await s.close();
      assert.deepEqual(await within(pending, 'the watch to end on close'), { done: true, value: undefined });
      await s.close(); // closing twice is harmless
      await rejectsWith(s.get('/close/x'), 'STORE_CLOSED', 503);
      await rejectsWith(s.create('/close/x', 1), 'STORE_CLOSED', 503);
      await rejectsWith(s.revision(), 'STORE_CLOSED', 503);
      await rejectsWith(s.watch('/close/')[Symbol.asyncIterator]().next(), 'STORE_CLOSED', 503);
    } finally {
      await s.close();
      await cleanup();
    }
  });

  it('compacts history: old watches fail with STORE_COMPACTED, state and recent history stay', () =>
    withStore(open, async (s) => {
      const r0 = await s.revision();
      const k = await s.create('/cmp/k', 1);
      const k2 = await s.update('/cmp/k', 2, k.modRevision);
      await s.create('/cmp/gone', 0);
      await s.delete('/cmp/gone');
      await s.create('/cmp/other', 'o');
      const cut = await s.revision();
      await s.update('/cmp/k', 3, k2.modRevision);
      await s.compact(cut);
      await s.compact(r0); // older than what is compacted: nothing to do
      await rejectsWith(s.compact(cut + 100), 'STORE_INVALID', 400);
      await rejectsWith(new Tap(s, '/cmp/', { afterRevision: r0 }).pull(), 'STORE_COMPACTED', 410, String(r0));
      await rejectsWith(new Tap(s, '/cmp/', { afterRevision: cut - 1 }).pull(), 'STORE_COMPACTED', 410);
      // History right after the cut is whole, prevKv included.
      await withTap(s, '/cmp/', { afterRevision: cut }, async (tap) => {
        assert.deepEqual(brief(await tap.next()), { type: 'put', key: '/cmp/k', revision: cut + 1, value: 3, prev: 2 });
      });
      assert.deepEqual((await s.list('/cmp/')).items.map((i) => [i.key, i.value, i.version]), [['/cmp/k', 3, 3], ['/cmp/other', 'o', 1]]);
      assert.equal(await s.get('/cmp/gone'), undefined);
      assert.equal(await s.revision(), cut + 1);
      const again = await s.create('/cmp/gone', 'back');
      assert.equal(again.modRevision, cut + 2);
    }));
}
