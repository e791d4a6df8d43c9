/**
 * The agent's name service: follows the manager's name sources (a long poll of GET /v1/agent/names
 * that returns when something that names or addresses a container changed), keeps the name table,
 * and keeps a DNS listener on the gateway of every container network present on this host.
 */
import { networkInterfaces } from 'node:os';
import { DEFAULT_NETWORK, parseCidr } from '../../model/index.ts';
import { DnsServer, type Listener } from './server.ts';
import { buildNameTable, lookupName, type NameSources, type NameTable } from './table.ts';

/** One answer of the name sources, with the store revision to wait after next time. */
export type NameSourcesAt = NameSources & { readonly revision: number };

/** What the name service needs. */
export interface NameServiceOptions {
  /**
   * Reads the name sources; with `afterRevision` it may wait (up to the manager's limit) until
   * something changed after that revision.
   */
  readonly read: (o: { afterRevision?: number; signal: AbortSignal }) => Promise<NameSourcesAt>;
  /** The subnet of this host's default network: the cluster network's, or the node-local bridge's. */
  readonly defaultSubnet: string;
  /** Set without the cluster network: only this node's containers are named (others are unreachable). */
  readonly node?: string;
  /** DNS port (default 53). */
  readonly port?: number;
  /** How often to look for gateways that appeared or went (a named network's bridge comes with its first container; default 500 ms). */
  readonly scanMs?: number;
  /**
   * The least time between two reads (default 250 ms): a burst of changes (a deploy, a failover of
   * many containers) costs a few reads a second, not one per status report.
   */
  readonly minReadIntervalMs?: number;
  /** This host's IPv4 addresses (default: from os.networkInterfaces). */
  readonly localAddresses?: () => ReadonlySet<string>;
  readonly log: (m: string) => void;
}

/** A running name service. */
export interface NameService {
  /** The current table (empty until the manager first answered). */
  table(): NameTable;
  /** Resolves once the first table is in and its listeners were opened. */
  ready(): Promise<void>;
  /** The gateway addresses answered on now. */
  addresses(): string[];
  stop(): Promise<void>;
}

const DEFAULT_SCAN_MS = 500;
const DEFAULT_MIN_READ_INTERVAL_MS = 250;

/** Every IPv4 address of this network namespace. */
function hostAddresses(): ReadonlySet<string> {
  return new Set(Object.values(networkInterfaces()).flatMap((list) => (list ?? []).filter((a) => a.family === 'IPv4').map((a) => a.address)));
}

/** The listeners wanted: every known network whose gateway this host holds. */
export function wantedListeners(defaultSubnet: string, named: NameSources['networks'], local: ReadonlySet<string>): Listener[] {
  const all = [{ name: DEFAULT_NETWORK, subnet: defaultSubnet }, ...named].map((n) => ({ address: parseCidr(n.subnet).gateway, network: n.name, subnet: parseCidr(n.subnet).cidr }));
  return all.filter((l) => local.has(l.address));
}

/** Starts the name service; its listeners open once the first name table has arrived. */
export function startNameService(o: NameServiceOptions): NameService {
  const ac = new AbortController();
  let table: NameTable = new Map();
  let named: NameSources['networks'] = [];
  let loaded = false;
  let markReady: () => void = () => undefined;
  const readyP = new Promise<void>((r) => { markReady = r; });
  const server = new DnsServer({ port: o.port, resolve: (network, labels) => lookupName(table, network, labels), log: o.log });
  const local = o.localAddresses ?? hostAddresses;

  // One sync at a time (a slow close must not race a new open of the same address), and at most one
  // waiting behind it: it reads the newest state when it runs.
  let syncing: Promise<void> = Promise.resolve();
  let queued = false;
  const sync = (): Promise<void> => {
    if (queued) return syncing;
    queued = true;
    syncing = syncing.then(async () => {
      queued = false;
      if (!loaded || ac.signal.aborted) return;
      await server.sync(wantedListeners(o.defaultSubnet, named, local()));
    }).catch((e: Error) => o.log(`dns: ${e.message}`));
    return syncing;
  };

  const follow = (async () => {
    let revision: number | undefined;
    let delay = 200;
    let lastError = '';
    let lastRead = 0;
    const minInterval = o.minReadIntervalMs ?? DEFAULT_MIN_READ_INTERVAL_MS;
    while (!ac.signal.aborted) {
      try {
        const pause = lastRead + minInterval - Date.now();
        if (pause > 0) await new Promise((r) => setTimeout(r, pause));
        if (ac.signal.aborted) break;
        lastRead = Date.now();
        const r = await o.read({ ...(revision === undefined ? {} : { afterRevision: revision }), signal: ac.signal });
        table = buildNameTable(r, o.node === undefined ? {} : { node: o.node });
        named = r.networks;
        revision = r.revision;
        loaded = true;
        await sync();
        markReady();
        delay = 200;
        lastError = '';
      } catch (e) {
        if (ac.signal.aborted) break;
        // The last table keeps being answered while the manager is away.
        const msg = (e as Error).message;
        if (msg !== lastError) o.log(`dns: reading names from the manager: ${msg}; retrying (the last names are still answered)`);
        lastError = msg;
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 5000);
      }
    }
  })();
  const scan = setInterval(() => void sync(), o.scanMs ?? DEFAULT_SCAN_MS);

  return {
    table: () => table,
    ready: () => readyP,
    addresses: () => server.addresses(),
    async stop() {
      ac.abort();
      clearInterval(scan);
      await follow;
      await syncing;
      await server.close();
    },
  };
}
