/**
 * Fixtures for tests of the lb against a real HAProxy: tiny HTTP and TCP backends on loopback that
 * answer with their own id and record what they saw, a loopback HTTP client that sets Host, a free
 * port range, and a scan for leftover processes.
 */
import { EventEmitter, once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer as createHttpServer, request, type Agent } from 'node:http';
import { connect, createServer as createTcpServer, type Socket } from 'node:net';

/** An HTTP backend that answers `<id>` (and `/healthz` 200, or 500 while failing). */
export interface HttpBackend {
  id: string;
  port: number;
  /** Paths of requests it received, in order (health checks included). */
  seen: string[];
  /** Emits `request` (path) when one arrives. */
  events: EventEmitter;
  /** Makes health paths answer 500 (true) or 200 (false). */
  failHealth(on: boolean): void;
  /** Answers every request to `/slow…` waiting so far. */
  releaseSlow(): void;
  close(): Promise<void>;
}

const HEALTH = /^\/(healthz|ready)/;

/** Starts an HTTP backend on 127.0.0.1 (ephemeral port); `/slow…` requests wait for `releaseSlow()`. */
export async function startHttpBackend(id: string): Promise<HttpBackend> {
  const events = new EventEmitter();
  const seen: string[] = [];
  const sockets = new Set<Socket>();
  let failing = false;
  let slow: (() => void)[] = [];
  const server = createHttpServer((req, res) => {
    const path = req.url ?? '/';
    seen.push(path);
    events.emit('request', path);
    if (HEALTH.test(path)) {
      res.statusCode = failing ? 500 : 200;
      res.end(failing ? 'failing' : 'ok');
    } else if (path.startsWith('/slow')) {
      slow.push(() => res.end(id));
    } else {
      res.end(id);
    }
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  return {
    id, port, seen, events,
    failHealth: (on) => { failing = on; },
    releaseSlow: () => { const w = slow; slow = []; for (const f of w) f(); },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A TCP backend that writes `<id>\n` to each connection and closes it. */
export interface TcpBackend {
  id: string;
  port: number;
  close(): Promise<void>;
}

/** Starts a TCP backend on 127.0.0.1 (ephemeral port). */
export async function startTcpBackend(id: string): Promise<TcpBackend> {
  const sockets = new Set<Socket>();
  const server = createTcpServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.end(`${id}\n`);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    id,
    port: (server.address() as { port: number }).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** An HTTP answer. */
export interface HttpAnswer {
  status: number;
  body: string;
}

/** GET http://127.0.0.1:<port><path> with the given Host header (fetch() may not set Host). */
export function httpGet(port: number, host: string, path = '/', agent?: Agent): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { host }, agent: agent ?? false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.setTimeout(30_000, () => req.destroy(new Error('no answer within 30 s')));
    req.on('error', reject);
    req.end();
  });
}

/** Connects to 127.0.0.1:<port> and resolves with everything read until the peer closes. */
export function tcpRead(port: number, onConnect?: (s: Socket) => void): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = '';
    const s = connect(port, '127.0.0.1', () => onConnect?.(s));
    s.setEncoding('utf8');
    s.setTimeout(30_000, () => s.destroy(new Error('no close within 30 s')));
    s.on('data', (d: string) => { data += d; });
    s.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? resolve(data) : reject(e)));
    s.on('close', () => resolve(data));
  });
}

async function portFree(port: number): Promise<boolean> {
  const s = createTcpServer();
  return new Promise((resolve) => {
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** First port of `count` consecutive ports free on 127.0.0.1 now (searched at random in 20000–29999). */
export async function freePortRange(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * (10_000 - count));
    let ok = true;
    for (let p = base; p < base + count && ok; p++) ok = await portFree(p);
    if (ok) return base;
  }
  throw new Error(`no ${count} consecutive free ports found`);
}

/** PIDs of live processes whose command line contains `needle` (zombies excluded). */
export function processesMatching(needle: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8');
      if (cmd.includes(needle)) out.push(Number(name));
    } catch { /* gone */ }
  }
  return out;
}
