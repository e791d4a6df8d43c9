import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { SqliteStore } from './sqlite.ts';
import { runStoreConformance } from './conformance.ts';
import { Tap, within } from './conformance-kit.ts';

let dir = '';
let n = 0;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), `ferry-store-test-${process.pid}-`));
});
after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});
const freshFile = (): string => join(dir, `db-${++n}.db`);

runStoreConformance('sqlite', async () => {
  const file = freshFile();
  return {
    store: new SqliteStore(file),
    cleanup: async () => {
      for (const suffix of ['', '-wal', '-shm']) await rm(file + suffix, { force: true });
    },
  };
});

describe('sqlite store on a shared file', () => {
  it('two stores on one file see each other\'s writes, watch events and CAS conflicts', async () => {
    const file = freshFile();
    const a = new SqliteStore(file);
    const b = new SqliteStore(file);
    try {
      const tap = new Tap(b, '/shared/');
      try {
        const kv = await a.create('/shared/k', 'from a');
        assert.deepEqual(await b.get('/shared/k'), kv);
        const e = await tap.next();
        assert.equal(e.kv.value, 'from a');
        const results = await Promise.allSettled([a.update('/shared/k', 'a2', kv.modRevision), b.update('/shared/k', 'b2', kv.modRevision)]);
        assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
        assert.equal((await tap.next()).kv.version, 2);
        const viaB = await b.create('/shared/j', 'from b');
        assert.equal(viaB.modRevision, kv.modRevision + 2);
        assert.equal(await a.revision(), viaB.modRevision);
      } finally {
        tap.stop();
      }
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('sees writes of another process through polling', async () => {
    const file = freshFile();
    const script = join(dir, 'writer.mts');
    const sqliteModule = fileURLToPath(new URL('./sqlite.ts', import.meta.url));
    await writeFile(
      script,
      `import { SqliteStore } from ${JSON.stringify(sqliteModule)};
const s = new SqliteStore(process.argv[2]);
const kv = await s.create('/xproc/k', { from: 'child', pid: process.pid });
await s.update('/xproc/k', { from: 'child', n: 2 }, kv.modRevision);
await s.close();
`,
    );
    const s = new SqliteStore(file);
    const tap = new Tap<{ from: string }>(s, '/xproc/');
    try {
      const first = tap.next();
      first.catch(() => {}); // awaited below; only keeps an early failure from being reported as unhandled
      const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
      await promisify(execFile)(process.execPath, ['--import', 'tsx', script, file], { cwd: repoRoot, timeout: 30_000 });
      const events = [await first, await tap.next()];
      assert.deepEqual(events.map((e) => [e.type, e.kv.version, e.kv.value.from]), [['put', 1, 'child'], ['put', 2, 'child']]);
      assert.equal(events[1]?.prevKv?.version, 1);
    } finally {
      tap.stop();
      await s.close();
    }
  });

  it('stays correct when several processes compare-and-swap the same key', async () => {
    const file = freshFile();
    const script = join(dir, 'incrementer.mts');
    const storeModule = fileURLToPath(new URL('./index.ts', import.meta.url));
    await writeFile(
      script,
      `import { openStore, mutate } from ${JSON.stringify(storeModule)};
const s = await openStore('sqlite:' + process.argv[2]);
for (let i = 0; i < 200; i++) await mutate(s, '/count', (n) => n + 1, 10_000);
await s.close();
`,
    );
    const s = new SqliteStore(file);
    try {
      const start = await s.create('/count', 0);
      const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
      const run = () => promisify(execFile)(process.execPath, ['--import', 'tsx', script, file], { cwd: repoRoot, timeout: 60_000 });
      await Promise.all([run(), run(), run()]);
      const end = await s.get<number>('/count');
      assert.equal(end?.value, 600);
      assert.equal(end?.version, 601);
      assert.equal(end?.modRevision, start.modRevision + 600);
      assert.equal(await s.revision(), start.modRevision + 600);
    } finally {
      await s.close();
    }
  });

  it('keeps data, revision, leases and compaction across close and reopen', async () => {
    const file = freshFile();
    const first = new SqliteStore(file);
    const kv = await first.create('/keep/k', { v: 1 });
    await first.create('/keep/old', 0);
    await first.delete('/keep/old');
    const lease = await first.grantLease(1);
    await first.create('/keep/leased', 1, { lease: lease.id });
    await first.compact(kv.modRevision);
    const rev = await first.revision();
    await first.close();

    const second = new SqliteStore(file);
    try {
      assert.deepEqual(await second.get('/keep/k'), kv);
      assert.equal(await second.revision(), rev);
      const next = await second.create('/keep/new', 2);
      assert.equal(next.modRevision, rev + 1);
      await assert.rejects(new Tap(second, '/keep/', { afterRevision: 0 }).pull(), { code: 'FERRY_ERR_STORE_COMPACTED' });
      // The process that held the lease is gone; the lease still expires and takes its key along.
      const tap = new Tap(second, '/keep/leased', { afterRevision: next.modRevision });
      try {
        const e = await tap.next();
        assert.equal(e.type, 'delete');
      } finally {
        tap.stop();
      }
      assert.equal(await second.get('/keep/leased'), undefined);
    } finally {
      await second.close();
    }
  });

  it('compacts automatically, keeping the configured history', async () => {
    const file = freshFile();
    const s = new SqliteStore(file, { retainRevisions: 10 });
    try {
      let rev = (await s.create('/auto', 0)).modRevision;
      for (let i = 1; i <= 2_500; i++) rev = (await s.update('/auto', i, rev)).modRevision;
      await assert.rejects(new Tap(s, '/auto', { afterRevision: 1 }).pull(), { code: 'FERRY_ERR_STORE_COMPACTED' });
      const tap = new Tap<number>(s, '/auto', { afterRevision: rev - 10 });
      try {
        const e = await tap.next();
        assert.deepEqual([e.revision, e.kv.value, e.prevKv?.value], [rev - 9, 2_500 - 9, 2_500 - 10]);
      } finally {
        tap.stop();
      }
      assert.equal((await s.get('/auto'))?.version, 2_501);
    } finally {
      await s.close();
    }
  });

  it('ends a waiting watch when the store closes', async () => {
    const s = new SqliteStore(freshFile());
    const tap = new Tap(s, '/');
    const pending = tap.pull();
    await s.close();
    assert.equal((await within(pending, 'the watch to end')).done, true);
  });
});
