import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { connect, createServer } from 'node:net';
import { DnsServer } from './server.ts';
import type { Resolution } from './message.ts';
import { decode, query } from './testkit.ts';

/** A port free for both UDP and TCP on 127.0.0.1 and 127.0.0.2 right now. */
async function freePort(): Promise<number> {
  for (;;) {
    const udp = createSocket('udp4');
    const port = await new Promise<number>((r) => udp.bind(0, '127.0.0.1', () => r(udp.address().port)));
    const tcp = createServer();
    const ok = await new Promise<boolean>((r) => { tcp.once('error', () => r(false)); tcp.listen(port, '127.0.0.2', () => r(true)); });
    await new Promise<void>((r) => udp.close(() => r()));
    if (ok) await new Promise<void>((r) => tcp.close(() => r()));
    if (ok) return port;
  }
}

const many = Array.from({ length: 40 }, (_, i) => `10.0.1.${i + 1}`);

function resolve(network: string, labels: readonly string[]): Resolution {
  const name = labels.join('.').toLowerCase();
  if (network === 'a' && (name === 'web' || name === 'web.ferry')) return { rcode: 'NOERROR', addresses: ['10.0.0.2', '10.0.0.3'] };
  if (network === 'a' && name === 'big') return { rcode: 'NOERROR', addresses: many };
  if (network === 'b' && name === 'web') return { rcode: 'NOERROR', addresses: ['10.9.0.2'] };
  return labels.length === 1 ? { rcode: 'NXDOMAIN' } : { rcode: 'REFUSED' };
}

/** A real stub resolver (c-ares) pointed at one address, one try, no search list. */
function client(address: string, port: number): Resolver {
  const r = new Resolver({ timeout: 2000, tries: 1 });
  r.setServers([`${address}:${port}`]);
  return r;
}

test('answers a real resolver over UDP and (for long answers) TCP, per listener; refuses outsiders', async (t) => {
  const port = await freePort();
  const logs: string[] = [];
  const server = new DnsServer({ port, resolve, log: (m) => logs.push(m) });
  t.after(() => server.close());
  await server.sync([
    { address: '127.0.0.1', network: 'a', subnet: '127.0.0.0/8' },
    // Its subnet does not hold the asker (127.0.0.1): like a container asking another network's gateway.
    { address: '127.0.0.2', network: 'b', subnet: '10.9.0.0/24' },
  ]);
  assert.deepEqual(server.addresses().sort(), ['127.0.0.1', '127.0.0.2']);

  const a = client('127.0.0.1', port);
  assert.deepEqual((await a.resolve4('web')).sort(), ['10.0.0.2', '10.0.0.3']);
  assert.deepEqual((await a.resolve4('WEB.ferry', { ttl: true })).map((x) => x.ttl), [1, 1]);
  await assert.rejects(a.resolve4('nope'), { code: 'ENOTFOUND' });
  await assert.rejects(a.resolve4('example.com'), { code: 'EREFUSED' });
  await assert.rejects(a.resolve6('web'), { code: 'ENODATA' });
  // 40 records do not fit in 512 bytes: TC over UDP, then the whole answer over TCP.
  assert.deepEqual((await a.resolve4('big')).sort(), [...many].sort());
  await assert.rejects(client('127.0.0.2', port).resolve4('web'), { code: 'EREFUSED' });
  assert.deepEqual(logs.filter((l) => !l.startsWith('dns: answering')), []);
});

test('sync opens, keeps and closes listeners; one that cannot bind is logged once and retried', async (t) => {
  const port = await freePort();
  const logs: string[] = [];
  const server = new DnsServer({ port, resolve, log: (m) => logs.push(m) });
  t.after(() => server.close());
  const one = { address: '127.0.0.1', network: 'a', subnet: '127.0.0.0/8' };
  // TEST-NET-1: no host holds it, so the bind fails.
  const absent = { address: '192.0.2.1', network: 'x', subnet: '192.0.2.0/24' };
  await server.sync([one, absent]);
  await server.sync([one, absent]);
  assert.deepEqual(server.addresses(), ['127.0.0.1']);
  assert.equal(logs.filter((l) => l.includes('cannot listen on 192.0.2.1')).length, 1);
  assert.deepEqual(await client('127.0.0.1', port).resolve4('web').then((x) => x.length), 2);
  // A listener whose network changed is reopened for the new one.
  await server.sync([{ ...one, network: 'b' }]);
  assert.deepEqual(await client('127.0.0.1', port).resolve4('web'), ['10.9.0.2']);
  await server.sync([]);
  assert.deepEqual(server.addresses(), []);
  await assert.rejects(client('127.0.0.1', port).resolve4('web'), (e: NodeJS.ErrnoException) => e.code === 'ECONNREFUSED' || e.code === 'ETIMEOUT');
});

test('a TCP connection carries several questions, together in one write or split across writes', async (t) => {
  const port = await freePort();
  const server = new DnsServer({ port, resolve, log: () => undefined });
  t.after(() => server.close());
  await server.sync([{ address: '127.0.0.1', network: 'a', subnet: '127.0.0.0/8' }]);
  const sock = connect(port, '127.0.0.1');
  t.after(() => sock.destroy());
  const frame = (q: Uint8Array): Buffer => { const b = Buffer.alloc(2 + q.length); b.writeUInt16BE(q.length); Buffer.from(q).copy(b, 2); return b; };
  const answers: Buffer[] = [];
  let buf = Buffer.alloc(0);
  const got = new Promise<void>((r) => sock.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      answers.push(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      buf = buf.subarray(2 + buf.readUInt16BE(0));
    }
    if (answers.length === 2) r();
  }));
  // Two questions in one write, the second split across writes.
  const second = frame(query('nope', 1, { id: 2 }));
  sock.write(Buffer.concat([frame(query('web', 1, { id: 1 })), second.subarray(0, 5)]));
  await new Promise((r) => setTimeout(r, 20));
  sock.write(second.subarray(5));
  await got;
  const [x, y] = answers.map(decode);
  assert.deepEqual([x!.id, x!.addresses.length, y!.id, y!.rcode], [1, 2, 2, 3]);
});
