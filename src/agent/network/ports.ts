/**
 * Published ports as a userland TCP proxy inside the agent (like docker-proxy): one listener per
 * host address/port, each accepted connection piped to the container's address with backpressure
 * and half-close. One node-wide table (container → mappings) catches conflicts before the OS does,
 * and is persisted so a restarted agent knows who holds what until it re-publishes.
 */
import { rm } from 'node:fs/promises';
import { connect, createServer, isIP } from 'node:net';
import type { Server, Socket } from 'node:net';
import { netErrors } from './errors.ts';
import { checkPortMapping, formatPortMapping } from './port-spec.ts';
import { SerialQueue, isRecord, readJson, writeJsonAtomic } from './state-file.ts';
import type { PortMapping } from './types.ts';

/** One container's published ports as the table holds them. */
export interface PublishedPorts {
  readonly containerId: string;
  /** The container address connections go to. */
  readonly ip: string;
  readonly ports: readonly PortMapping[];
}

/** Connection counters of one published port. */
export interface PortStats {
  readonly containerId: string;
  readonly mapping: PortMapping;
  /** True while the agent listens on it (false after a restart until it is re-published). */
  readonly listening: boolean;
  /** Connections open now. */
  readonly active: number;
  /** Connections accepted since the listener opened. */
  readonly total: number;
  /** Connections the container refused or that failed before reaching it. */
  readonly failed: number;
}

/** A live listener and the connections it carries. */
interface Forward {
  readonly server: Server;
  readonly sockets: Set<Socket>;
  /** When bytes last moved each way, per open connection (what a drain waits on). */
  readonly traffic: Set<Traffic>;
  target: { ip: string; port: number };
  mapping: PortMapping;
  active: number;
  total: number;
  failed: number;
}

/** When bytes last moved up (client → container) and down on one connection (0 = never). */
interface Traffic {
  up: number;
  down: number;
}

/** A connection whose answer has been quiet this long counts as idle (e.g. HTTP keep-alive). */
const QUIET_MS = 20;

/**
 * True while a connection is in the middle of an exchange: the client sent bytes not yet followed
 * by an answer, or the answer is still flowing. An idle keep-alive connection, or a stream between
 * two events, is not: cutting it loses nothing the container has already done.
 */
function busy(t: Traffic, now: number): boolean {
  return t.up > t.down || now - t.down < QUIET_MS;
}

const WILDCARDS = new Set(['0.0.0.0', '::']);

/** `hostIp:hostPort` key of a mapping's listener. */
function listenKey(m: PortMapping): string {
  return `${m.hostIp}|${m.hostPort}`;
}

/** True when two mappings cannot both listen: same port and same or wildcard address. */
function overlaps(a: PortMapping, b: PortMapping): boolean {
  return a.hostPort === b.hostPort && (a.hostIp === b.hostIp || WILDCARDS.has(a.hostIp) || WILDCARDS.has(b.hostIp));
}

/** The node's published ports: table, listeners and their persistence in `file`. */
export class PortProxy {
  private readonly file: string;
  private readonly log: (m: string) => void;
  private readonly queue = new SerialQueue();
  private table: Map<string, PublishedPorts> | undefined;
  private readonly forwards = new Map<string, Map<string, Forward>>();

  constructor(options: { file: string; log?: (m: string) => void }) {
    this.file = options.file;
    this.log = options.log ?? (() => undefined);
  }

  /**
   * Makes `ports` the container's published set: listeners open for new mappings, close for dropped
   * ones, and an identical re-publish (e.g. at adoption after a restart) only reopens what is missing.
   */
  async publish(containerId: string, ip: string, ports: readonly PortMapping[]): Promise<void> {
    if (isIP(ip) === 0) throw netErrors.NET_BAD_CONFIG({ reason: `container address "${ip}" is not an IP address` });
    for (const m of ports) checkPortMapping(m);
    for (let i = 0; i < ports.length; i++) {
      for (let j = 0; j < i; j++) {
        if (overlaps(ports[i] as PortMapping, ports[j] as PortMapping)) {
          throw netErrors.NET_BAD_PORT({ spec: formatPortMapping(ports[i] as PortMapping), reason: `overlaps ${formatPortMapping(ports[j] as PortMapping)} in the same request` });
        }
      }
    }
    const wanted = ports.map((m) => ({ hostIp: m.hostIp, hostPort: m.hostPort, containerPort: m.containerPort, protocol: m.protocol }));
    return this.queue.run(async () => {
      const table = await this.load();
      for (const m of wanted) {
        for (const other of table.values()) {
          if (other.containerId === containerId) continue;
          const held = other.ports.find((o) => overlaps(o, m));
          if (held) throw netErrors.NET_PORT_IN_USE({ hostIp: m.hostIp, hostPort: m.hostPort, holder: other.containerId, by: ` by container ${other.containerId} (${formatPortMapping(held)})` });
        }
      }
      const live = this.forwards.get(containerId) ?? new Map<string, Forward>();
      const opened: Forward[] = [];
      const nextTable = new Map(table);
      if (wanted.length > 0) nextTable.set(containerId, { containerId, ip, ports: wanted });
      else nextTable.delete(containerId);
      try {
        for (const m of wanted) {
          if (!live.has(listenKey(m))) opened.push(await this.listen(containerId, ip, m));
        }
        await this.save(nextTable);
      } catch (e) {
        // All or nothing: a failed bind or write leaves the previous listeners and table as they were.
        await Promise.all(opened.map((f) => closeForward(f)));
        throw e;
      }
      const next = new Map(live);
      for (const f of opened) next.set(listenKey(f.mapping), f);
      const keep = new Set(wanted.map(listenKey));
      for (const [key, f] of live) {
        if (!keep.has(key)) {
          next.delete(key);
          await closeForward(f);
        }
      }
      // Kept listeners follow a new container address or port for connections from now on.
      for (const m of wanted) {
        const f = next.get(listenKey(m)) as Forward;
        f.target = { ip, port: m.containerPort };
        f.mapping = m;
      }
      if (next.size > 0) this.forwards.set(containerId, next);
      else this.forwards.delete(containerId);
      if (opened.length > 0) this.log(`network: published ${opened.map((f) => formatPortMapping(f.mapping)).join(', ')} → ${containerId} (${ip})`);
    });
  }

  /**
   * Closes the container's listeners and open connections and forgets its ports; idempotent. With
   * `drainMs`, new connections are refused at once but open ones get that long to finish first (a
   * migration drains before it freezes, so no request is cut after the app has answered it).
   */
  unpublish(containerId: string, drainMs = 0): Promise<void> {
    return this.queue.run(async () => {
      const table = await this.load();
      await this.closeListeners(containerId, drainMs);
      if (!table.has(containerId)) return;
      const next = new Map(table);
      next.delete(containerId);
      await this.save(next);
      this.log(`network: unpublished the ports of ${containerId}`);
    });
  }

  /** The persisted table, listening or not (after a restart: what to re-publish or unpublish). */
  published(): Promise<PublishedPorts[]> {
    return this.queue.run(async () => [...(await this.load()).values()]);
  }

  /** Counters of the container's ports (every port in the table, listening or not). */
  async stats(containerId: string): Promise<PortStats[]> {
    const entry = (await this.published()).find((p) => p.containerId === containerId);
    if (!entry) return [];
    const live = this.forwards.get(containerId);
    return entry.ports.map((mapping) => {
      const f = live?.get(listenKey(mapping));
      return { containerId, mapping, listening: f !== undefined, active: f?.active ?? 0, total: f?.total ?? 0, failed: f?.failed ?? 0 };
    });
  }

  /** Stops every listener and connection but keeps the table (agent shutdown; a restart re-publishes). */
  close(): Promise<void> {
    return this.queue.run(async () => {
      for (const id of [...this.forwards.keys()]) await this.closeListeners(id);
    });
  }

  /** Stops everything and removes the table file (node network destroy). */
  clear(): Promise<void> {
    return this.queue.run(async () => {
      for (const id of [...this.forwards.keys()]) await this.closeListeners(id);
      await rm(this.file, { force: true });
      this.table = undefined;
    });
  }

  private async closeListeners(containerId: string, drainMs = 0): Promise<void> {
    const live = this.forwards.get(containerId);
    this.forwards.delete(containerId);
    if (live) await Promise.all([...live.values()].map((f) => closeForward(f, drainMs)));
  }

  /** Opens one listener; EADDRINUSE from the OS becomes NET_PORT_IN_USE. */
  private listen(containerId: string, ip: string, mapping: PortMapping): Promise<Forward> {
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true });
    const forward: Forward = { server, sockets: new Set(), traffic: new Set(), target: { ip, port: mapping.containerPort }, mapping, active: 0, total: 0, failed: 0 };
    server.on('connection', (client) => this.pipe(forward, client));
    return new Promise((resolve, reject) => {
      const onError = (e: NodeJS.ErrnoException) => {
        server.close();
        if (e.code === 'EADDRINUSE') {
          reject(netErrors.NET_PORT_IN_USE({ hostIp: mapping.hostIp, hostPort: mapping.hostPort, by: ' by another process' }, e));
        } else {
          reject(netErrors.NET_SETUP_FAILED({ command: `listen on ${mapping.hostIp}:${mapping.hostPort}`, stderr: e.message }, e));
        }
      };
      server.once('error', onError);
      server.listen({ host: mapping.hostIp, port: mapping.hostPort, backlog: 511, ipv6Only: mapping.hostIp !== '::' && isIP(mapping.hostIp) === 6 }, () => {
        server.off('error', onError);
        server.on('error', (e) => this.log(`network: listener ${formatPortMapping(mapping)} of ${containerId}: ${e.message}`));
        resolve(forward);
      });
    });
  }

  /** Joins a client to a fresh connection to the container; either side's end or error reaches the other. */
  private pipe(forward: Forward, client: Socket): void {
    forward.total++;
    forward.active++;
    const upstream = connect({ host: forward.target.ip, port: forward.target.port, allowHalfOpen: true });
    forward.sockets.add(client);
    forward.sockets.add(upstream);
    let connected = false;
    let open = 2;
    const traffic: Traffic = { up: 0, down: 0 };
    forward.traffic.add(traffic);
    const closed = (s: Socket) => {
      forward.sockets.delete(s);
      if (--open === 0) {
        forward.active--;
        forward.traffic.delete(traffic);
      }
    };
    client.once('close', () => closed(client));
    upstream.once('close', () => closed(upstream));
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    upstream.once('connect', () => {
      connected = true;
      // pipe() pauses the source while the destination's buffer is full (backpressure) and ends the
      // destination when the source ends (half-close travels through).
      client.pipe(upstream);
      upstream.pipe(client);
      // Listeners added after pipe(): an earlier 'data' listener would start the flow before the pipe.
      client.on('data', () => { traffic.up = Date.now(); });
      upstream.on('data', () => { traffic.down = Date.now(); });
      client.resume();
    });
    upstream.on('error', () => {
      if (connected) {
        client.destroy();
        return;
      }
      // Refused or unreachable before any byte moved: a clean close (FIN), not a reset.
      forward.failed++;
      client.destroySoon();
    });
    client.on('error', () => upstream.destroy());
  }

  private async load(): Promise<Map<string, PublishedPorts>> {
    if (this.table) return this.table;
    const raw = await readJson(this.file);
    const table = new Map<string, PublishedPorts>();
    if (raw !== undefined) {
      if (!isRecord(raw) || raw.version !== 1 || !isRecord(raw.containers)) {
        throw netErrors.NET_STATE_INVALID({ file: this.file, reason: 'not a version 1 port table' });
      }
      for (const [containerId, v] of Object.entries(raw.containers)) {
        if (!isRecord(v) || typeof v.ip !== 'string' || !Array.isArray(v.ports)) {
          throw netErrors.NET_STATE_INVALID({ file: this.file, reason: `entry of ${containerId} is malformed` });
        }
        const ports = v.ports as PortMapping[];
        try {
          for (const m of ports) checkPortMapping(m);
        } catch (e) {
          throw netErrors.NET_STATE_INVALID({ file: this.file, reason: `entry of ${containerId}: ${(e as Error).message}` }, e);
        }
        table.set(containerId, { containerId, ip: v.ip, ports });
      }
    }
    this.table = table;
    return table;
  }

  private async save(table: Map<string, PublishedPorts>): Promise<void> {
    const containers: Record<string, { ip: string; ports: readonly PortMapping[] }> = {};
    for (const [id, p] of table) containers[id] = { ip: p.ip, ports: p.ports };
    await writeJsonAtomic(this.file, { version: 1, containers });
    this.table = table;
  }
}

/** Stops accepting, lets exchanges in progress finish for up to `drainMs`, then cuts every connection. */
async function closeForward(f: Forward, drainMs = 0): Promise<void> {
  const closed = new Promise<void>((resolve) => f.server.close(() => resolve()));
  const exchanging = (): boolean => [...f.traffic].some((t) => busy(t, Date.now()));
  for (const t0 = Date.now(); exchanging() && Date.now() - t0 < drainMs;) await new Promise((r) => setTimeout(r, 5));
  for (const s of f.sockets) s.destroy();
  await closed;
}
