/**
 * The DNS listeners: one UDP socket and one TCP server on port 53 of each container network's
 * gateway address on this host. The address a question arrived on says which network asked, so a
 * container only ever learns names of its own network; a question from outside that network's
 * subnet (a container sending to another network's gateway) is refused.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server, type Socket } from 'node:net';
import { subnetContains } from '../../model/index.ts';
import { replyTo, TCP_MAX_BYTES, UDP_MAX_BYTES, type Resolution } from './message.ts';

/** Port 53 of one gateway, answering for one network. */
export interface Listener {
  /** The gateway address (the bridge holds it). */
  readonly address: string;
  readonly network: string;
  /** The network's CIDR: only questions from inside it are answered. */
  readonly subnet: string;
}

/** How the server answers. */
export interface DnsServerOptions {
  /** Default 53. */
  readonly port?: number;
  /** Seconds an answer may be kept (default 1: scaling and retirements show within a second or two). */
  readonly ttl?: number;
  /** What a name means on a network (see table.ts lookupName). */
  readonly resolve: (network: string, labels: readonly string[]) => Resolution;
  readonly log: (m: string) => void;
}

/** A TCP connection that sends nothing for this long is closed. */
const TCP_IDLE_MS = 10_000;
/** Open TCP connections per listener. */
const TCP_MAX_CONNECTIONS = 64;

interface Open {
  listener: Listener;
  udp: UdpSocket;
  tcp: Server;
  connections: Set<Socket>;
}

/** The DNS server of one agent: listeners come and go with the networks present on this host. */
export class DnsServer {
  private readonly open = new Map<string, Open>();
  /** The last bind failure logged per address (logged again only when it changes). */
  private readonly failures = new Map<string, string>();
  private readonly port: number;
  private readonly ttl: number;

  constructor(private readonly o: DnsServerOptions) {
    this.port = o.port ?? 53;
    this.ttl = o.ttl ?? 1;
  }

  /** Makes the open listeners exactly `want`: opens the missing ones (a failure is logged and tried again next time), closes the rest. */
  async sync(want: readonly Listener[]): Promise<void> {
    const wanted = new Map(want.map((l) => [l.address, l]));
    for (const [address, o] of this.open) {
      const w = wanted.get(address);
      if (w && w.network === o.listener.network && w.subnet === o.listener.subnet) continue;
      await this.closeOne(address);
    }
    for (const l of want) {
      if (this.open.has(l.address)) continue;
      try {
        this.open.set(l.address, await this.listen(l));
        this.failures.delete(l.address);
        this.o.log(`dns: answering for network ${l.network} on ${l.address}:${this.port}`);
      } catch (e) {
        const msg = (e as Error).message;
        if (this.failures.get(l.address) !== msg) this.o.log(`dns: cannot listen on ${l.address}:${this.port} for network ${l.network}: ${msg}`);
        this.failures.set(l.address, msg);
      }
    }
  }

  /** The addresses being answered on. */
  addresses(): string[] {
    return [...this.open.keys()];
  }

  /** Closes every listener. */
  async close(): Promise<void> {
    for (const address of [...this.open.keys()]) await this.closeOne(address);
  }

  /** The reply to `packet` from `from` on listener `l`, or undefined for none. */
  private reply(l: Listener, from: string, packet: Uint8Array, maxBytes: number): Uint8Array | undefined {
    const inside = isIpv4(from) && subnetContains(l.subnet, from);
    return replyTo(packet, (labels) => (inside ? this.o.resolve(l.network, labels) : { rcode: 'REFUSED' }), { maxBytes, ttl: this.ttl });
  }

  private async listen(l: Listener): Promise<Open> {
    const udp = createSocket({ type: 'udp4' });
    udp.on('message', (msg, rinfo) => {
      const out = this.reply(l, rinfo.address, msg, UDP_MAX_BYTES);
      if (out) udp.send(out, rinfo.port, rinfo.address, (e) => { if (e) this.o.log(`dns: answer to ${rinfo.address}: ${e.message}`); });
    });
    try {
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind({ address: l.address, port: this.port }, () => { udp.off('error', reject); resolve(); });
      });
    } catch (e) {
      try { udp.close(); } catch { /* never bound */ }
      throw e;
    }
    udp.on('error', (e) => this.o.log(`dns: ${l.address} (udp): ${e.message}`));
    const connections = new Set<Socket>();
    const tcp = createServer((sock) => this.serveTcp(l, sock, connections));
    // A container opening connections without end must not take the agent's descriptors.
    tcp.maxConnections = TCP_MAX_CONNECTIONS;
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen({ host: l.address, port: this.port }, () => { tcp.off('error', reject); resolve(); });
      });
    } catch (e) {
      udp.close();
      throw e;
    }
    tcp.on('error', (e) => this.o.log(`dns: ${l.address} (tcp): ${e.message}`));
    return { listener: l, udp, tcp, connections };
  }

  /** DNS over TCP: messages with a two-byte length prefix, several per connection. */
  private serveTcp(l: Listener, sock: Socket, connections: Set<Socket>): void {
    connections.add(sock);
    sock.setTimeout(TCP_IDLE_MS, () => sock.destroy());
    sock.on('close', () => connections.delete(sock));
    sock.on('error', () => sock.destroy());
    let buf = Buffer.alloc(0);
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const packet = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + packet.length);
        const out = this.reply(l, sock.remoteAddress ?? '', packet, TCP_MAX_BYTES);
        if (!out) {
          sock.destroy();
          return;
        }
        const len = Buffer.alloc(2);
        len.writeUInt16BE(out.length);
        sock.write(Buffer.concat([len, out]));
      }
    });
  }

  private async closeOne(address: string): Promise<void> {
    const o = this.open.get(address);
    if (!o) return;
    this.open.delete(address);
    for (const s of o.connections) s.destroy();
    await Promise.all([
      new Promise<void>((r) => o.udp.close(() => r())),
      new Promise<void>((r) => o.tcp.close(() => r())),
    ]);
    this.o.log(`dns: stopped answering on ${address}:${this.port} (network ${o.listener.network})`);
  }
}

function isIpv4(ip: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(ip);
}
