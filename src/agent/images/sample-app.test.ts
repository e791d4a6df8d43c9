/**
 * The sample-app C server (native/sample/sample-app.c), compiled from source and run on the host on
 * loopback ports: routes, keep-alive, Connection: close, pipelining, garbage, many connections, SSE,
 * the TCP line echo, ballast, and SIGTERM.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { hostname } from 'node:os';
import { test, type TestContext } from 'node:test';
import { have, prerequisite, sampleAppBinary } from './testkit.ts';

/** A free loopback port (bound then released). */
async function freePort(): Promise<number> {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as net.AddressInfo).port;
  srv.close();
  await once(srv, 'close');
  return port;
}

/** Starts sample-app with `env`; waits for its "listening" line; kills it after the test. */
async function startApp(t: TestContext, env: Record<string, string>): Promise<{ child: ChildProcess; port: number; stderr: () => string }> {
  const bin = await sampleAppBinary();
  const port = await freePort();
  const child = spawn(bin, [], { env: { PORT: String(port), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null && child.pid) process.kill(child.pid, 'SIGKILL');
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes(`sample-app listening on :${port}\n`)) resolve();
    });
    child.on('exit', (c) => reject(new Error(`sample-app exited ${c}: ${err}`)));
  });
  return { child, port, stderr: () => err };
}

/** One HTTP GET; resolves status, body and whether the socket was reused. */
function get(port: number, path: string, agent?: http.Agent, headers: Record<string, string> = {}): Promise<{ status: number; body: string; reused: boolean; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body, reused: req.reusedSocket, headers: res.headers }));
    });
    req.on('error', reject);
  });
}

/** Sends raw bytes on a fresh connection and collects everything until the server closes it. */
async function raw(port: number, data: string | Buffer): Promise<string> {
  const s = net.connect(port, '127.0.0.1');
  await once(s, 'connect');
  s.write(data);
  let out = '';
  s.setEncoding('latin1');
  s.on('data', (c: string) => (out += c));
  await once(s, 'close');
  return out;
}

test('sample-app serves its routes over keep-alive and many connections', async (t) => {
  if (!prerequisite(t, await have('gcc'), 'gcc')) return;
  const { child, port, stderr } = await startApp(t, {});
  const first = await get(port, '/');
  assert.equal(first.status, 200);
  assert.equal(first.headers['content-type'], 'application/json');
  assert.ok(first.body.endsWith('}\n'));
  const j = JSON.parse(first.body);
  assert.equal(j.count, 1);
  assert.equal(j.pid, child.pid);
  assert.equal(j.hostname, hostname());
  assert.match(j.started, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.equal(JSON.parse((await get(port, '/')).body).count, 2);
  assert.deepEqual(JSON.parse((await get(port, '/count')).body), { count: 2 });
  assert.deepEqual(JSON.parse((await get(port, '/count?x=1')).body), { count: 2 }, 'no increment');
  const health = await get(port, '/healthz');
  assert.deepEqual([health.status, health.body], [200, 'ok']);
  assert.match((await get(port, '/env')).body, new RegExp(`^PORT=${port}$`, 'm'));
  assert.equal((await get(port, '/nope')).status, 404);

  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  await get(port, '/healthz', agent);
  assert.equal((await get(port, '/healthz', agent)).reused, true, 'keep-alive reuses the socket');

  const closed = await raw(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assert.match(closed, /^HTTP\/1\.1 200 OK\r\n[\s\S]*Connection: close\r\n\r\nok$/);
  const piped = await raw(port, 'GET /count HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assert.equal(piped.match(/HTTP\/1\.1 200 OK/g)?.length, 2, 'pipelined requests both answered');
  assert.match(await raw(port, Buffer.from([0, 1, 2, 255, 10, 13, 10, 13, 10])), /^HTTP\/1\.1 400 /);
  assert.match(await raw(port, `GET /${'a'.repeat(20000)} HTTP/1.1\r\n`), /^HTTP\/1\.1 431 /);

  const many = new http.Agent({ keepAlive: true, maxSockets: 100 });
  t.after(() => many.destroy());
  const before = JSON.parse((await get(port, '/count')).body).count as number;
  const results = await Promise.all(Array.from({ length: 300 }, () => get(port, '/', many)));
  assert.ok(results.every((r) => r.status === 200));
  assert.equal(new Set(results.map((r) => JSON.parse(r.body).count)).size, 300, 'every request counted once');
  assert.deepEqual(JSON.parse((await get(port, '/count')).body), { count: before + 300 });
  assert.equal(stderr(), '', 'nothing logged for normal traffic');

  const exit = once(child, 'exit');
  process.kill(child.pid!, 'SIGTERM');
  const [codeAtExit] = await exit;
  assert.equal(codeAtExit, 0, 'SIGTERM exits 0');
});

test('sample-app streams Server-Sent Events', async (t) => {
  if (!prerequisite(t, await have('gcc'), 'gcc')) return;
  const { port } = await startApp(t, {});
  const events = await new Promise<{ seq: number; t: number; value: number }[]>((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/stream' }, (res) => {
      assert.equal(res.headers['content-type'], 'text/event-stream');
      let buf = '';
      const got: { seq: number; t: number; value: number }[] = [];
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        buf += c;
        for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = block.split('\n').find((l) => l.startsWith('data: '));
          if (data) got.push(JSON.parse(data.slice(6)));
          if (got.length === 3) {
            req.destroy();
            resolve(got);
          }
        }
      });
    });
    req.on('error', (e) => (e.message.includes('aborted') ? undefined : reject(e)));
  });
  assert.equal(events.length, 3);
  assert.ok(events[1]!.seq === events[0]!.seq + 1 && events[2]!.seq === events[1]!.seq + 1, 'consecutive seq');
  for (const e of events) {
    assert.ok(Math.abs(e.t - Date.now()) < 60_000, 'ms since epoch');
    assert.ok(e.value >= -1 && e.value <= 1, 'a sine sample');
  }
});

test('sample-app echoes lines with a per-connection counter and holds ballast', async (t) => {
  if (!prerequisite(t, await have('gcc'), 'gcc')) return;
  const echoPort = await freePort();
  const app = await startApp(t, { ECHO_PORT: String(echoPort), BALLAST_MB: '16', DIRTY_PCT_PER_SEC: '20' });
  const status = await readFile(`/proc/${app.child.pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)![1]);
  assert.ok(rssKb >= 16 * 1024, `ballast touched (VmRSS ${rssKb} kB)`);

  const s = net.connect(echoPort, '127.0.0.1');
  t.after(() => s.destroy());
  await once(s, 'connect');
  s.setEncoding('utf8');
  let got = '';
  s.on('data', (c: string) => (got += c));
  const until = async (n: number) => {
    while (got.split('\n').length - 1 < n) await once(s, 'data');
  };
  s.write('hello\nworld\r\n');
  await until(2);
  s.write('par');
  await new Promise((r) => setTimeout(r, 50));
  s.write('tial\n');
  await until(3);
  assert.equal(got, '1: hello\n2: world\n3: partial\n');
  const s2 = net.connect(echoPort, '127.0.0.1');
  t.after(() => s2.destroy());
  s2.setEncoding('utf8');
  s2.write('again\n');
  const [line] = await once(s2, 'data');
  assert.equal(line, '1: again\n', 'the counter is per connection');
  assert.equal((await get(app.port, '/healthz')).body, 'ok', 'HTTP keeps working alongside');
});

test('sample-app hashes its ballast: the same while nothing rewrites it, different once something does', async (t) => {
  if (!prerequisite(t, await have('gcc'), 'gcc')) return;
  const still = await startApp(t, { BALLAST_MB: '8' });
  const first = JSON.parse((await get(still.port, '/ballast')).body) as { pages: number; fnv1a: string };
  assert.equal(first.pages, 8 * 256);
  assert.match(first.fnv1a, /^[0-9a-f]{16}$/);
  assert.deepEqual(JSON.parse((await get(still.port, '/ballast')).body), first, 'unchanged memory, unchanged hash');
  const busy = await startApp(t, { BALLAST_MB: '8', DIRTY_PCT_PER_SEC: '50' });
  const before = JSON.parse((await get(busy.port, '/ballast')).body) as { fnv1a: string };
  await new Promise((r) => setTimeout(r, 300));
  assert.notEqual((JSON.parse((await get(busy.port, '/ballast')).body) as { fnv1a: string }).fnv1a, before.fnv1a, 'rewritten pages change the hash');
  const none = await startApp(t, {});
  assert.deepEqual(JSON.parse((await get(none.port, '/ballast')).body), { pages: 0, fnv1a: 'cbf29ce484222325' });
});
