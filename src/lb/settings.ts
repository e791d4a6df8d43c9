/** The lb's options as a caller gives them, and their checked, defaulted form. Pure. */
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { lbErrors } from './errors.ts';
import type { LbSettings } from './types.ts';
import type { LbEvent } from './events.ts';

/** Options of `Lb.start`. */
export interface LbOptions {
  /** Directory for the config, maps, Lua, sockets and pidfile; created if missing. */
  stateDir: string;
  /** haproxy binary (path or name); default: `haproxy` on PATH or in /usr/sbin. */
  haproxy?: string;
  /** The HTTP entry point; absent: no HTTP routes. Address defaults to 127.0.0.1. */
  http?: { address?: string; port: number };
  /** The TCP entry point: one listener per port of `first`–`last`; absent: no TCP routes. */
  tcp?: { address?: string; first: number; last: number };
  /** Pre-provisioned backends per group and server slots per backend (defaults 4 and 16). */
  pool?: { slots?: number; servers?: number };
  /** Health checks (defaults: every 2 s, down after 3 failures, up after 2 passes, 2 s timeout). */
  check?: { interMs?: number; fall?: number; rise?: number; timeoutMs?: number };
  /** Holds: the longest a request waits (default 10 s) and how many may wait per service (default 1000). */
  hold?: { maxWaitMs?: number; maxQueue?: number };
  /** Proxy timeouts (defaults: connect 5 s, client and server 60 s). */
  timeouts?: { connectMs?: number; clientMs?: number; serverMs?: number };
  /** Sticky cookie name and the key its values are derived from (keep the key across restarts to keep sessions). */
  cookie?: { name?: string; key?: string };
  /** Worker threads (default: HAProxy's, one per CPU). */
  nbthread?: number;
  /** After a reload, how long an old worker may keep serving its connections. */
  hardStopAfterMs?: number;
  /** Grow the pool with a hitless reload when it runs out (default true); false: POOL_EXHAUSTED. */
  allowReload?: boolean;
  /** Progress and lifecycle events. */
  onEvent?: (e: LbEvent) => void;
}

function positiveInt(v: unknown, what: string, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > max) throw lbErrors.BAD_OPTIONS({ reason: `${what} must be an integer 1–${max}, got ${String(v)}` });
  return v as number;
}

function address(v: string | undefined, what: string): string {
  const a = v ?? '127.0.0.1';
  if (isIP(a) === 0) throw lbErrors.BAD_OPTIONS({ reason: `${what} address "${a}" is not an IP address` });
  return a;
}

/** Checks options and fills defaults; throws BAD_OPTIONS. */
export function resolveSettings(o: LbOptions): LbSettings {
  if (!o.stateDir) throw lbErrors.BAD_OPTIONS({ reason: 'stateDir is required' });
  // Unix socket paths are limited to 107 bytes; "master.sock" is the longest name inside.
  if (Buffer.byteLength(o.stateDir) > 90) throw lbErrors.BAD_OPTIONS({ reason: `stateDir "${o.stateDir}" is too long for unix socket paths (max 90 bytes)` });
  const s: LbSettings = {
    pool: { slots: positiveInt(o.pool?.slots ?? 4, 'pool.slots', 1000), servers: positiveInt(o.pool?.servers ?? 16, 'pool.servers', 4096) },
    check: {
      interMs: positiveInt(o.check?.interMs ?? 2000, 'check.interMs'),
      fall: positiveInt(o.check?.fall ?? 3, 'check.fall', 100),
      rise: positiveInt(o.check?.rise ?? 2, 'check.rise', 100),
      timeoutMs: positiveInt(o.check?.timeoutMs ?? 2000, 'check.timeoutMs'),
    },
    hold: { maxWaitMs: positiveInt(o.hold?.maxWaitMs ?? 10_000, 'hold.maxWaitMs'), maxQueue: positiveInt(o.hold?.maxQueue ?? 1000, 'hold.maxQueue') },
    timeouts: {
      connectMs: positiveInt(o.timeouts?.connectMs ?? 5000, 'timeouts.connectMs'),
      clientMs: positiveInt(o.timeouts?.clientMs ?? 60_000, 'timeouts.clientMs'),
      serverMs: positiveInt(o.timeouts?.serverMs ?? 60_000, 'timeouts.serverMs'),
    },
    cookie: { name: o.cookie?.name ?? 'FERRY_SRV', key: o.cookie?.key ?? randomBytes(12).toString('hex') },
  };
  if (!/^[A-Za-z0-9_-]+$/.test(s.cookie.name) || !/^[A-Za-z0-9_-]+$/.test(s.cookie.key)) throw lbErrors.BAD_OPTIONS({ reason: 'cookie name and key are letters, digits, "_" or "-"' });
  if (o.http) s.http = { address: address(o.http.address, 'http'), port: positiveInt(o.http.port, 'http.port', 65535) };
  if (o.tcp) {
    const first = positiveInt(o.tcp.first, 'tcp.first', 65535);
    const last = positiveInt(o.tcp.last, 'tcp.last', 65535);
    if (last < first) throw lbErrors.BAD_OPTIONS({ reason: `tcp range ${first}-${last} is empty` });
    if (last - first >= 10_000) throw lbErrors.BAD_OPTIONS({ reason: `tcp range ${first}-${last} is over 10000 ports (one listener each)` });
    if (o.http && o.http.port >= first && o.http.port <= last) throw lbErrors.BAD_OPTIONS({ reason: `http port ${o.http.port} lies inside the tcp range` });
    s.tcp = { address: address(o.tcp.address, 'tcp'), first, last };
  }
  if (o.nbthread !== undefined) s.nbthread = positiveInt(o.nbthread, 'nbthread', 64);
  if (o.hardStopAfterMs !== undefined) s.hardStopAfterMs = positiveInt(o.hardStopAfterMs, 'hardStopAfterMs');
  return s;
}
