/**
 * The entry point's desired-state model (what the control plane asks for) and the state the lb
 * believes HAProxy holds (which pooled backend and server slot each service and replica occupies).
 */

/** How a service is reached: HTTP (routed by host and path prefix) or TCP (routed by port). */
export type LbMode = 'http' | 'tcp';

/** Load-balancing algorithm of a service's backend. */
export type LbBalance = 'roundrobin' | 'leastconn';

/** How HAProxy checks a server: an HTTP GET of `path` expecting 2xx/3xx, or a TCP connect. */
export type LbHealth = { kind: 'http'; path: string } | { kind: 'tcp' };

/** Administrative state of a server: in rotation, finishing what it has, or out. */
export type LbServerState = 'ready' | 'drain' | 'maint';

/** One replica behind a service. */
export interface LbServer {
  /** Unique within the service (e.g. the container name). */
  name: string;
  /** IPv4 or IPv6 literal (HAProxy's runtime API takes addresses, not names). */
  address: string;
  port: number;
  /** 0–256; default 1. */
  weight?: number;
  state: LbServerState;
  /** false: its health checks pause (a frozen replica must not be marked down for the freeze). */
  checks?: boolean;
}

/** What the entry point should do for one service. */
export interface LbRoute {
  /** Unique service name. */
  service: string;
  mode: LbMode;
  /** HTTP host names (lower-cased; no port); absent: any host (then `pathPrefix` alone routes). */
  hosts?: string[];
  /** HTTP path prefix matched on whole segments (`/api` takes `/api` and `/api/x`, not `/apix`); longest wins. */
  pathPrefix?: string;
  /** TCP mode: the entry-point port, inside the configured TCP range. */
  tcpPort?: number;
  balance: LbBalance;
  /** HTTP only: a cookie pins a client to its server. */
  sticky?: boolean;
  /** Absent: no checks (servers count as up while ready). */
  health?: LbHealth;
  servers: LbServer[];
  /** New requests wait at HAProxy (freeze); absent in `apply`: keep what `hold()` last set. */
  hold?: boolean;
}

/** What cannot change on a live backend in HAProxy 2.6: backends are pooled per group. */
export interface GroupKey {
  mode: LbMode;
  balance: LbBalance;
  sticky: boolean;
  check: 'http' | 'tcp';
}

/** Size of one group of pooled backends: how many backends, each with how many server slots. */
export interface GroupShape {
  slots: number;
  servers: number;
}

/** Pool sizes per group id (see `groupId`). */
export type PoolShape = Record<string, GroupShape>;

/** Where a service lives in the pool: its backend and, per replica name, its server slot (1-based). */
export interface SlotAssignment {
  backend: string;
  servers: Record<string, number>;
}

/** What the lb believes HAProxy holds: pool shape, the routes, and where each one sits. */
export interface LbState {
  shape: PoolShape;
  routes: Record<string, LbRoute>;
  slots: Record<string, SlotAssignment>;
}

/** One command for HAProxy's runtime API and what a successful answer looks like. */
export interface RuntimeCommand {
  command: string;
  /** Matches a successful answer; absent: the answer must be blank. */
  ok?: RegExp;
}

/** Files the lb keeps in its state dir. */
export interface LbPaths {
  dir: string;
  config: string;
  pidfile: string;
  adminSocket: string;
  masterSocket: string;
  lua: string;
  hostMap: string;
  pathMap: string;
  tcpMap: string;
  healthMap: string;
}

/** Settings of the lb with every default filled in. */
export interface LbSettings {
  http?: { address: string; port: number };
  tcp?: { address: string; first: number; last: number };
  pool: GroupShape;
  check: { interMs: number; fall: number; rise: number; timeoutMs: number };
  hold: { maxWaitMs: number; maxQueue: number };
  timeouts: { connectMs: number; clientMs: number; serverMs: number };
  cookie: { name: string; key: string };
  nbthread?: number;
  hardStopAfterMs?: number;
}
