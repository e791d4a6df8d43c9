import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { openStore } from './index.ts';
import { freePort } from '../../test/support/net.ts';
import { skipUnlessEtcd, startEtcd, type TestEtcd } from '../../test/support/etcd.ts';

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
  for (const url of ['etcd:', 'etcd://', 'etcd:127.0.0.1:2379', 'etcd://127.0.0.1', 'etcd://127.0.0.1:2379/prefix', 'etcd://u:p@h:1', 'bogus:x', '/no/scheme.db', 'sqlite:', 'sqlite://host/x.db', 'sqlite:/x.db?mode=ro', 'memory:/x']) {
    await assert.rejects(openStore(url), (e: Error & { code?: string; status?: number }) => {
      assert.equal(e.code, 'FERRY_ERR_STORE_BAD_URL', url);
      assert.equal(e.status, 400);
      assert.ok(e.message.includes(url));
      return true;
    });
  }
});

it('openStore fails with STORE_UNAVAILABLE naming every endpoint when no etcd answers', async () => {
  const [a, b] = [await freePort(), await freePort()];
  const url = `etcd://127.0.0.1:${a},127.0.0.1:${b}`;
  await assert.rejects(openStore(url), (e: Error & { code?: string; status?: number }) => {
    assert.equal(e.code, 'FERRY_ERR_STORE_UNAVAILABLE');
    assert.equal(e.status, 503);
    assert.ok(e.message.includes(`http://127.0.0.1:${a},http://127.0.0.1:${b}`), e.message);
    assert.ok(e.message.includes('ECONNREFUSED'), e.message);
    return true;
  });
});

describe('openStore on a private etcd', { skip: skipUnlessEtcd() }, () => {
  let etcd: TestEtcd | undefined;
  after(async () => {
    assert.deepEqual((await etcd?.stop()) ?? [], []);
  });

  it('opens etcd://host:port lists, skipping members that do not answer', async () => {
    etcd = await startEtcd(1);
    const dead = await freePort();
    const s = await openStore(`etcd://127.0.0.1:${dead},${(etcd.clientUrls[0] as string).slice('http://'.length)}`);
    try {
      const kv = await s.create(`/index-test/${process.pid}`, 'v');
      assert.equal((await s.get(kv.key))?.value, 'v');
      await s.delete(kv.key);
    } finally {
      await s.close();
    }
  });
});
