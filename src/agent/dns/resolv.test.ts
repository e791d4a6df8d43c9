import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hookGateway, resolvConf, resolvConfMount } from './resolv.ts';

const prestart = [{ path: '/x/ferry-net-hook', args: ['/x/ferry-net-hook', 'mode=up', 'addr=10.240.0.5/16', 'gateway=10.240.0.1', 'gateway-mac=0a:58:0a:f0:00:01'] }];

test('resolv.conf: the gateway as the only nameserver, search ferry', () => {
  const text = resolvConf('10.240.0.1');
  assert.match(text, /^nameserver 10\.240\.0\.1$/m);
  assert.match(text, /^search ferry$/m);
  assert.equal(text.match(/^nameserver/gm)?.length, 1);
});

test('the gateway comes from the network hook; no hook, no gateway', () => {
  assert.equal(hookGateway(prestart), '10.240.0.1');
  assert.equal(hookGateway([]), undefined);
  assert.equal(hookGateway([{ path: '/other', args: ['/other'] }]), undefined);
});

test('the mount: a read-only file in the container directory, written (again) only when it changed', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-resolv-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const m = await resolvConfMount({ containerDir: dir, prestart, volumeTargets: ['/data'] });
  assert.deepEqual(m, { source: join(dir, 'resolv.conf'), destination: '/etc/resolv.conf', readOnly: true });
  assert.equal(await readFile(join(dir, 'resolv.conf'), 'utf8'), resolvConf('10.240.0.1'));
  assert.equal((await stat(join(dir, 'resolv.conf'))).mode & 0o777, 0o644);
  const before = (await stat(join(dir, 'resolv.conf'))).mtimeMs;
  await new Promise((r) => setTimeout(r, 20));
  await resolvConfMount({ containerDir: dir, prestart, volumeTargets: [] });
  assert.equal((await stat(join(dir, 'resolv.conf'))).mtimeMs, before);
  // A user's own /etc/resolv.conf volume wins; a container without a network gets none.
  assert.equal(await resolvConfMount({ containerDir: dir, prestart, volumeTargets: ['/etc/resolv.conf/'] }), undefined);
  assert.equal(await resolvConfMount({ containerDir: dir, prestart: [], volumeTargets: [] }), undefined);
});
