import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import { isFerryError } from '../../errors/index.ts';
import { LocalAddressAllocator } from './ipam.ts';
import { intToIp, ipToInt, macFromIp, parseSubnet } from './ipv4.ts';

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-ipam-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('subnet math: gateway, host range, MAC from the IP', () => {
  const s = parseSubnet('10.213.0.0/24');
  assert.equal(s.cidr, '10.213.0.0/24');
  assert.equal(s.gateway, '10.213.0.1');
  assert.equal(intToIp(s.firstHost), '10.213.0.2');
  assert.equal(intToIp(s.lastHost), '10.213.0.254');
  assert.equal(macFromIp('10.213.0.2'), '0a:58:0a:d5:00:02');
  assert.equal(macFromIp('255.1.16.200'), '0a:58:ff:01:10:c8');
  assert.equal(ipToInt('10.0.0.01'), undefined);
  assert.equal(ipToInt('256.0.0.1'), undefined);
  for (const bad of ['10.213.0.1/24', '10.213.0.0/31', '10.213.0.0/7', '10.213.0.0', 'x/24', '10.213.0.0/24/1']) {
    assert.throws(() => parseSubnet(bad), (e: unknown) => isFerryError(e, 'NET_BAD_CONFIG'), bad);
  }
});

test('50 concurrent allocations get 50 different addresses, each stable per container', async (t) => {
  const file = join(await tempDir(t), 'ipam.json');
  const ipam = new LocalAddressAllocator({ file, subnet: '10.213.9.0/24' });
  const ids = Array.from({ length: 50 }, (_, i) => `c${i}`);
  const leases = await Promise.all(ids.map((id) => ipam.allocate(id)));
  assert.equal(new Set(leases.map((l) => l.ip)).size, 50);
  for (const l of leases) {
    assert.match(l.ip, /^10\.213\.9\.\d+$/);
    assert.notEqual(l.ip, '10.213.9.1', 'the gateway is never leased');
    assert.equal(l.mac, macFromIp(l.ip));
    assert.equal(l.gateway, '10.213.9.1');
    assert.equal(l.prefixLength, 24);
  }
  // Idempotent per container, also concurrently.
  const again = await Promise.all(ids.map((id) => ipam.allocate(id)));
  assert.deepEqual(again, leases);
  assert.equal((await ipam.list()).length, 50);
  // Nothing but the table is left in the directory (temp files were renamed away).
  assert.deepEqual(await readdir(join(file, '..')), ['ipam.json']);
});

test('leases survive a restart (a new allocator re-reads the file)', async (t) => {
  const file = join(await tempDir(t), 'ipam.json');
  const first = new LocalAddressAllocator({ file, subnet: '10.213.9.0/24' });
  const a = await first.allocate('a');
  const b = await first.allocate('b');
  const second = new LocalAddressAllocator({ file, subnet: '10.213.9.0/24' });
  assert.deepEqual(await second.get('a'), a);
  assert.deepEqual(await second.allocate('b'), b);
  const c = await second.allocate('c');
  assert.ok(![a.ip, b.ip].includes(c.ip));
  const onDisk = JSON.parse(await readFile(file, 'utf8')) as { leases: Record<string, string> };
  assert.deepEqual(onDisk.leases, { a: a.ip, b: b.ip, c: c.ip });
});

test('release frees the address; it comes back only after the pool turned once, and exhaustion is NET_POOL_EXHAUSTED', async (t) => {
  const file = join(await tempDir(t), 'ipam.json');
  // /29: .0 network, .1 gateway, .2-.6 containers, .7 broadcast.
  const ipam = new LocalAddressAllocator({ file, subnet: '10.213.9.0/29' });
  const ips = [];
  for (const id of ['a', 'b', 'c']) ips.push((await ipam.allocate(id)).ip);
  assert.deepEqual(ips, ['10.213.9.2', '10.213.9.3', '10.213.9.4']);
  await ipam.release('a');
  await ipam.release('a'); // idempotent
  assert.equal(await ipam.get('a'), undefined);
  // Round-robin: the freed .2 is not handed out while fresh addresses remain.
  assert.equal((await ipam.allocate('d')).ip, '10.213.9.5');
  assert.equal((await ipam.allocate('e')).ip, '10.213.9.6');
  assert.equal((await ipam.allocate('f')).ip, '10.213.9.2');
  await assert.rejects(ipam.allocate('g'), (e: unknown) => {
    assert.ok(isFerryError(e, 'NET_POOL_EXHAUSTED'));
    assert.equal(e.status, 503);
    assert.match(e.message, /10\.213\.9\.0\/29/);
    return true;
  });
  // A failed allocation leaves the table untouched.
  assert.equal((await new LocalAddressAllocator({ file, subnet: '10.213.9.0/29' }).list()).length, 5);
  await ipam.release('c');
  assert.equal((await ipam.allocate('g')).ip, '10.213.9.4');
});

test('a table from another subnet is refused while it holds leases, and a broken file is NET_STATE_INVALID', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'ipam.json');
  await new LocalAddressAllocator({ file, subnet: '10.213.9.0/24' }).allocate('a');
  await assert.rejects(new LocalAddressAllocator({ file, subnet: '10.213.8.0/24' }).list(), (e: unknown) => isFerryError(e, 'NET_BAD_CONFIG'));
  await new LocalAddressAllocator({ file, subnet: '10.213.9.0/24' }).release('a');
  // Empty: the new subnet simply takes over.
  assert.equal((await new LocalAddressAllocator({ file, subnet: '10.213.8.0/24' }).allocate('b')).ip, '10.213.8.2');

  await writeFile(file, '{ not json');
  await assert.rejects(new LocalAddressAllocator({ file, subnet: '10.213.8.0/24' }).list(), (e: unknown) => isFerryError(e, 'NET_STATE_INVALID'));
  await writeFile(file, JSON.stringify({ version: 1, subnet: '10.213.8.0/24', last: null, leases: { x: '10.213.7.5' } }));
  await assert.rejects(new LocalAddressAllocator({ file, subnet: '10.213.8.0/24' }).list(), (e: unknown) => isFerryError(e, 'NET_STATE_INVALID'));
});

test('container ids are checked, and inherited object keys are not leases', async (t) => {
  const file = join(await tempDir(t), 'ipam.json');
  const ipam = new LocalAddressAllocator({ file, subnet: '10.213.9.0/24' });
  for (const bad of ['', '__proto__', '../x', 'a b', 'x'.repeat(200)]) {
    await assert.rejects(ipam.allocate(bad), (e: unknown) => isFerryError(e, 'NET_BAD_CONFIG'), bad);
  }
  assert.equal(await ipam.get('constructor'), undefined);
  assert.equal((await ipam.allocate('constructor')).ip, '10.213.9.2');
  await ipam.clear();
  assert.deepEqual(await readdir(join(file, '..')), []);
});
