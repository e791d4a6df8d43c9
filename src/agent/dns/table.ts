/**
 * The name table the agent's DNS answers from, built from what the manager says about services,
 * containers and their statuses (GET /v1/agent/names). Pure: no I/O.
 *
 *   network ─▶ name (lower case) ─▶ IPv4 addresses
 *     <service>    the running replicas that are not retiring (the service's own network)
 *     <container>  its address, while it runs (a service of the same name wins)
 */
import { DEFAULT_NETWORK } from '../../model/index.ts';
import type { Resolution } from './message.ts';

/** The zone Ferry answers for: `<name>` and `<name>.ferry`. */
export const ZONE = 'ferry';

/** What the table is made of: the projection of the store that GET /v1/agent/names sends. */
export interface NameSources {
  readonly services: ReadonlyArray<{ readonly name: string; readonly uid: string; readonly network?: string; readonly deleting?: boolean }>;
  readonly containers: ReadonlyArray<{
    readonly name: string; readonly uid: string; readonly network?: string; readonly ip?: string; readonly deleting?: boolean;
    /** The `ferry.io/service` and `ferry.io/service-uid` labels of a replica. */
    readonly service?: string; readonly serviceUid?: string;
  }>;
  readonly statuses: ReadonlyArray<{ readonly name: string; readonly uid: string; readonly node: string; readonly phase: string; readonly ip?: string }>;
  readonly retirements: ReadonlyArray<{ readonly container: string; readonly uid: string }>;
  /** Named networks (the cluster network, `default`, is implicit). */
  readonly networks: ReadonlyArray<{ readonly name: string; readonly subnet: string }>;
}

/** Names per network: network name → lower-case name → sorted addresses (empty: the name exists but has none now). */
export type NameTable = ReadonlyMap<string, ReadonlyMap<string, readonly string[]>>;

/**
 * Builds the table. With `node`, only containers that node runs count (nodes without the cluster
 * network: another node's node-local address is unreachable from here anyway).
 */
export function buildNameTable(src: NameSources, o: { node?: string } = {}): NameTable {
  const status = new Map(src.statuses.map((s) => [s.name, s]));
  const retiring = new Set(src.retirements.map((r) => `${r.container}/${r.uid}`));
  const services = new Map(src.services.filter((s) => !s.deleting).map((s) => [s.uid, s]));
  const table = new Map<string, Map<string, string[]>>();
  const names = (network: string): Map<string, string[]> => {
    let m = table.get(network);
    if (!m) table.set(network, (m = new Map()));
    return m;
  };
  /** Addresses of each service's live replicas, by service uid. */
  const replicas = new Map<string, string[]>();
  for (const c of [...src.containers].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const st = status.get(c.name);
    if (!st || st.uid !== c.uid || st.phase !== 'running' || c.deleting) continue;
    if (o.node !== undefined && st.node !== o.node) continue;
    const ip = c.ip ?? st.ip;
    if (!ip) continue;
    const network = c.network ?? DEFAULT_NETWORK;
    const key = c.name.toLowerCase();
    // Names differing only in letter case: the first in code-point order keeps it.
    if (!names(network).has(key)) names(network).set(key, [ip]);
    const s = c.serviceUid === undefined ? undefined : services.get(c.serviceUid);
    // A retiring replica leaves the answer at once, while the entry point still drains it.
    if (!s || s.name !== c.service || (s.network ?? DEFAULT_NETWORK) !== network || retiring.has(`${c.name}/${c.uid}`)) continue;
    replicas.set(s.uid, [...(replicas.get(s.uid) ?? []), ip]);
  }
  for (const s of services.values()) {
    names(s.network ?? DEFAULT_NETWORK).set(s.name.toLowerCase(), (replicas.get(s.uid) ?? []).sort(compareIps));
  }
  return table;
}

/**
 * What `labels` (a question's name) means on `network`: a known name (with its addresses, maybe
 * none), NXDOMAIN for an unknown name in Ferry's zone (one label, or ending in `.ferry`), REFUSED
 * for anything else — the server never forwards a question.
 */
export function lookupName(table: NameTable, network: string, labels: readonly string[]): Resolution {
  const lower = labels.map((l) => l.toLowerCase());
  if (lower.length === 0 || lower.some((l) => l === '')) return { rcode: 'REFUSED' };
  const inZone = lower.length === 1 || lower.at(-1) === ZONE;
  const name = lower.length > 1 && lower.at(-1) === ZONE ? lower.slice(0, -1).join('.') : lower.join('.');
  const addresses = table.get(network)?.get(name);
  if (addresses) return { rcode: 'NOERROR', addresses };
  return inZone ? { rcode: 'NXDOMAIN' } : { rcode: 'REFUSED' };
}

function compareIps(a: string, b: string): number {
  const n = (ip: string): number => ip.split('.').reduce((acc, p) => acc * 256 + Number(p), 0);
  return n(a) - n(b);
}
