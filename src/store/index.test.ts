import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { openStore } from './index.ts';

it('openStore picks the backend by URL scheme and creates parent directories', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), `ferry-store-index-${process.pid}-`));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const mem = await openStore('memory:');
  await mem.create('/k', 1);
  await mem.close();
  const file = join(dir, 'nested', 'deeper', 'state.db');
  const s = await openStore(`sqlite:${file}`);
  await s.create('/k', 'v');
  await s.close();
  assert.ok((await stat(file)).isFile());
  const again = await openStore(`sqlite://${file}`);
  assert.equal((await again.get('/k'))?.value, 'v');
  await again.close();
});

it('openStore refuses unusable URLs with STORE_BAD_URL', async () => {
  for (const url of ['etcd://127.0.0.1:2379', 'bogus:x', '/no/scheme.db', 'sqlite:', 'sqlite://host/x.db', 'sqlite:/x.db?mode=ro', 'memory:/x']) {
    await assert.rejects(openStore(url), (e: Error & { code?: string; status?: number }) => {
      assert.equal(e.code, 'FERRY_ERR_STORE_BAD_URL', url);
      assert.equal(e.status, 400);
      assert.ok(e.message.includes(url));
      return true;
    });
  }
  await assert.rejects(openStore('etcd://127.0.0.1:2379'), /not yet supported/);
});
