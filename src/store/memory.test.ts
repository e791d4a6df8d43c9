import assert from 'node:assert/strict';
import { it } from 'node:test';
import { MemoryStore } from './memory.ts';
import { runStoreConformance } from './conformance.ts';

runStoreConformance('memory', async () => ({ store: new MemoryStore(), cleanup: async () => {} }));

it('memory store keeps its history bounded by compacting automatically', async () => {
  const s = new MemoryStore({ retainRevisions: 10 });
  try {
    const kv = await s.create('/auto', 0);
    let rev = kv.modRevision;
    for (let i = 1; i <= 2_500; i++) rev = (await s.update('/auto', i, rev)).modRevision;
    const it = s.watch('/auto', { afterRevision: 1 })[Symbol.asyncIterator]();
    await assert.rejects(it.next(), { code: 'FERRY_ERR_STORE_COMPACTED' });
    const recent = s.watch('/auto', { afterRevision: rev - 10 })[Symbol.asyncIterator]();
    assert.equal((await recent.next()).value?.revision, rev - 9);
    await recent.return?.();
  } finally {
    await s.close();
  }
});
