import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import { isFerryError } from '../../errors/index.ts';
import { PortProxy } from './ports.ts';
import { exchange } from './testkit.ts';
import type { PortMapping } from './types.ts';

// Everything here stays on 127.0.0.1: the "container" is a local server.
const LO = '127.0.0.1';

async function setup(t: TestContext): Promise<{ file: string; proxy: PortProxy }> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-ports-'));
  const file = join(dir, 'ports.json');
  const proxy = new PortProxy({ file });
  t.after(async () => {
    await proxy.clear();
    await rm(dir, { recursive: true, force: true });
  });
  return { file, proxy };
}

/** A local server standing in for the container; closed after the test. */
async function upstream(t: TestContext, onConnection: (s: Socket) => void): Promise<number> {
  const server = createServer({ allowHalfOpen: true }, onConnection);
  const sockets = new Set<Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, LO, r));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return (server.address() as { port: number }).port;
}

/** A port nothing listens on right now (bound once, then released). */
async function freePort(): Promise<number> {
  const s: Server = createServer();
  await new Promise<void>((r) => s.listen(0, LO, r));
  const { port } = s.address() as { port: number };
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function map(hostPort: number, containerPort: number): PortMapping {
  return { hostIp: LO, hostPort, containerPort, protocol: 'tcp' };
}

async function eventually(check: () => Promise<boolean> | boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`never happened: ${what}`);
}

test('a published port forwards both ways, half-close travels through, connections are counted', async (t) => {
  const { proxy } = await setup(t);
  // Answers only after the client's FIN: proves the client's half-close reached it while its own
  // direction stayed open.
  const target = await upstream(t, (s) => {
    let n = 0;
    s.on('data', (b: Buffer) => (n += b.length));
    s.on('end', () => s.end(`got ${n} bytes`));
  });
  const hostPort = await freePort();
  await proxy.publish('c1', LO, [map(hostPort, target)]);
  assert.equal(await exchange(LO, hostPort, 'hello'), 'got 5 bytes');
  assert.equal(await exchange(LO, hostPort, 'x'.repeat(100_000)), 'got 100000 bytes');
  await eventually(async () => (await proxy.stats('c1'))[0]?.active === 0, 'connections closed');
  const [stats] = await proxy.stats('c1');
  assert.deepEqual(stats, { containerId: 'c1', mapping: map(hostPort, target), listening: true, active: 0, total: 2, failed: 0 });
});

test('backpressure: a container that does not read stalls the client instead of filling the agent, and no byte is lost', async (t) => {
  const { proxy } = await setup(t);
  let held: Socket | undefined;
  const target = await upstream(t, (s) => {
    s.pause(); // reads nothing until told
    held = s;
  });
  const hostPort = await freePort();
  await proxy.publish('c1', LO, [map(hostPort, target)]);

  const total = 64 * 1024 * 1024;
  const data = randomBytes(total);
  const client = connect({ host: LO, port: hostPort, allowHalfOpen: true });
  t.after(() => client.destroy());
  await new Promise<void>((r) => client.once('connect', () => r()));
  client.write(data);
  client.end();
  await eventually(() => held !== undefined, 'upstream accepted');
  // Let every buffer on the way fill up; then most of the 64 MiB must still wait in the client.
  let last = -1;
  await eventually(async () => {
    await new Promise((r) => setTimeout(r, 100));
    const accepted = total - client.writableLength;
    const settled = accepted === last;
    last = accepted;
    return settled;
  }, 'the client stalls');
  assert.ok(last < total / 2, `the proxy took ${last} of ${total} bytes from a client whose peer reads nothing`);

  const hash = createHash('sha256');
  let received = 0;
  const done = new Promise<void>((r) => (held as Socket).on('end', () => r()));
  (held as Socket).on('data', (b: Buffer) => {
    hash.update(b);
    received += b.length;
  });
  (held as Socket).resume();
  await done;
  assert.equal(received, total);
  assert.equal(hash.digest('hex'), createHash('sha256').update(data).digest('hex'));
});

test('a container that refuses the connection gets the client closed cleanly (FIN, no reset)', async (t) => {
  const { proxy } = await setup(t);
  const hostPort = await freePort();
  const closedPort = await freePort();
  await proxy.publish('c1', LO, [map(hostPort, closedPort)]);
  assert.equal(await exchange(LO, hostPort, 'anyone?'), '');
  await eventually(async () => (await proxy.stats('c1'))[0]?.active === 0, 'connection closed');
  assert.equal((await proxy.stats('c1'))[0]?.failed, 1);
});

test('ports held by another container or another process are NET_PORT_IN_USE, and a failed publish leaves nothing open', async (t) => {
  const { proxy } = await setup(t);
  const target = await upstream(t, (s) => s.end('hi'));
  const p = await freePort();
  await proxy.publish('c1', LO, [map(p, target)]);

  await assert.rejects(proxy.publish('c2', LO, [map(p, target)]), (e: unknown) => {
    assert.ok(isFerryError(e, 'NET_PORT_IN_USE'));
    assert.equal(e.status, 409);
    assert.equal(e.details.holder, 'c1');
    assert.match(e.message, new RegExp(`127\\.0\\.0\\.1:${p} is already in use by container c1`));
    return true;
  });
  // The wildcard overlaps every address on the port; the table catches it before any bind.
  await assert.rejects(proxy.publish('c2', LO, [{ ...map(p, target), hostIp: '0.0.0.0' }]), (e: unknown) => isFerryError(e, 'NET_PORT_IN_USE'));

  // Held by something that is not ours: the OS says EADDRINUSE.
  const foreign = createServer();
  await new Promise<void>((r) => foreign.listen(0, LO, r));
  t.after(() => new Promise<void>((r) => foreign.close(() => r())));
  const q = (foreign.address() as { port: number }).port;
  const r = await freePort();
  await assert.rejects(proxy.publish('c3', LO, [map(r, target), map(q, target)]), (e: unknown) => {
    assert.ok(isFerryError(e, 'NET_PORT_IN_USE'));
    assert.match(e.message, /by another process/);
    return true;
  });
  assert.deepEqual((await proxy.published()).map((x) => x.containerId), ['c1']);
  // r was opened before q failed and must have been closed again.
  await assert.rejects(exchange(LO, r, ''), /ECONNREFUSED/);

  await assert.rejects(proxy.publish('c4', LO, [map(r, target), map(r, target + 1)]), (e: unknown) => isFerryError(e, 'NET_BAD_PORT'));
  await assert.rejects(proxy.publish('c4', 'not-an-ip', [map(r, target)]), (e: unknown) => isFerryError(e, 'NET_BAD_CONFIG'));
  await assert.rejects(proxy.publish('c4', LO, [map(0, target)]), (e: unknown) => isFerryError(e, 'NET_BAD_PORT'));
});

test('unpublish closes the listener and cuts open connections; it is idempotent', async (t) => {
  const { proxy } = await setup(t);
  const target = await upstream(t, (s) => s.write('welcome\n')); // keeps the connection open
  const p = await freePort();
  await proxy.publish('c1', LO, [map(p, target)]);
  const client = connect({ host: LO, port: p });
  t.after(() => client.destroy());
  await new Promise<void>((r) => client.once('data', () => r()));
  assert.equal((await proxy.stats('c1'))[0]?.active, 1);
  const closed = new Promise<void>((r) => client.once('close', () => r()));
  client.on('error', () => undefined);
  await proxy.unpublish('c1');
  await closed;
  await assert.rejects(exchange(LO, p, ''), /ECONNREFUSED/);
  await proxy.unpublish('c1');
  assert.deepEqual(await proxy.published(), []);
  assert.deepEqual(await proxy.stats('c1'), []);
});

test('the table survives a restart: held ports still conflict, the same container re-publishes idempotently, a new set replaces the old', async (t) => {
  const { file, proxy } = await setup(t);
  const target = await upstream(t, (s) => s.end('pong'));
  const p = await freePort();
  await proxy.publish('c1', LO, [map(p, target)]);
  await proxy.close(); // agent stops: listeners go, the table stays

  const restarted = new PortProxy({ file });
  t.after(() => restarted.clear());
  assert.deepEqual(await restarted.published(), [{ containerId: 'c1', ip: LO, ports: [map(p, target)] }]);
  assert.equal((await restarted.stats('c1'))[0]?.listening, false);
  await assert.rejects(restarted.publish('c2', LO, [map(p, target)]), (e: unknown) => isFerryError(e, 'NET_PORT_IN_USE') && e.details.holder === 'c1');

  await restarted.publish('c1', LO, [map(p, target)]);
  await restarted.publish('c1', LO, [map(p, target)]); // adoption may call it again
  assert.equal(await exchange(LO, p, ''), 'pong');
  assert.equal((await restarted.stats('c1'))[0]?.total, 1, 'the listener was not reopened');

  const p2 = await freePort();
  await restarted.publish('c1', LO, [map(p2, target)]);
  await assert.rejects(exchange(LO, p, ''), /ECONNREFUSED/);
  assert.equal(await exchange(LO, p2, ''), 'pong');
  await restarted.publish('c2', LO, [map(p, target)]); // p is free again
  assert.deepEqual((await new PortProxy({ file }).published()).map((x) => [x.containerId, x.ports[0]?.hostPort]), [['c1', p2], ['c2', p]]);
});

// The drain limit is ten minutes: a drain that waited on an idle connection would hit the test's timeout.
test('a drain waits for an exchange in progress, not for idle connections', { timeout: 30_000 }, async (t) => {
  const { proxy } = await setup(t);
  // The "container" answers a line after 300 ms.
  const port = await upstream(t, (s) => s.on('data', (b) => setTimeout(() => s.write(`re:${b.toString()}`), 300)));
  const hostPort = await freePort();
  await proxy.publish('drain', LO, [map(hostPort, port)]);
  const dial = async (): Promise<Socket> => {
    const c = connect({ host: LO, port: hostPort });
    await new Promise<void>((r) => c.once('connect', () => r()));
    return c;
  };
  // An idle connection (a keep-alive HTTP client between requests) that already had its answer.
  const idle = await dial();
  idle.write('one');
  await new Promise<void>((r) => idle.once('data', () => r()));
  idle.on('error', () => undefined);
  const idleClosed = new Promise<void>((r) => idle.once('close', () => r()));
  await proxy.unpublish('drain', 600_000);
  await idleClosed; // cut, since nothing was in progress on it

  // A request without its answer yet: the drain lets the answer through before cutting.
  await proxy.publish('drain', LO, [map(hostPort, port)]);
  const pending = await dial();
  const answer = new Promise<string>((r) => pending.once('data', (b) => r(b.toString())));
  pending.on('error', () => undefined);
  pending.write('two');
  await new Promise((r) => setTimeout(r, 50));
  await proxy.unpublish('drain', 600_000);
  assert.equal(await answer, 're:two');
  idle.destroy();
  pending.destroy();
});
