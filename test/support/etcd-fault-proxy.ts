/**
 * An HTTP proxy in front of one etcd member that fails chosen transactions the ways a leader election
 * does, so tests can make "was my write applied?" happen on purpose: the write is applied and the
 * answer lost (etcd's "request timed out", or the connection cut), or it is refused before etcd sees it.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What the proxy does with the next transaction. */
export type TxnFault =
  /** etcd applies it; the client gets gRPC UNAVAILABLE "request timed out" instead of the answer. */
  | 'applied-then-timeout'
  /** etcd applies it; the connection is then cut without an answer. */
  | 'applied-then-cut'
  /** etcd never sees it; the client gets gRPC UNAVAILABLE "no leader". */
  | 'no-leader';

/** A running fault proxy. */
export interface FaultProxy {
  /** Its URL, to use as an etcd endpoint. */
  readonly url: string;
  /** Faults for the next transactions, in order; each is used once, then transactions pass. */
  readonly faults: TxnFault[];
  /** How many transactions reached etcd through the proxy. */
  readonly forwarded: () => number;
  close(): Promise<void>;
}

function body(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => resolve(Buffer.concat(parts)));
    req.on('error', reject);
  });
}

const unavailable = (message: string): string => JSON.stringify({ error: message, code: 14, message });

/** Starts a proxy on 127.0.0.1 in front of the etcd client URL `target`. */
export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const faults: TxnFault[] = [];
  let forwarded = 0;
  const server: Server = createServer((req, res) => {
    void (async () => {
      const payload = await body(req);
      const fault = req.url === '/v3/kv/txn' ? faults.shift() : undefined;
      if (fault === 'no-leader') {
        res.writeHead(503, { 'content-type': 'application/json' }).end(unavailable('etcdserver: no leader'));
        return;
      }
      if (req.url === '/v3/kv/txn') forwarded++;
      const answer = await fetch(`${target}${req.url}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: payload });
      const text = await answer.text();
      if (fault === 'applied-then-timeout') {
        res.writeHead(503, { 'content-type': 'application/json' }).end(unavailable('etcdserver: request timed out, possibly due to previous leader failure'));
      } else if (fault === 'applied-then-cut') {
        req.socket.destroy();
      } else {
        res.writeHead(answer.status, { 'content-type': 'application/json' }).end(text);
      }
    })().catch(() => req.socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    faults,
    forwarded: () => forwarded,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
