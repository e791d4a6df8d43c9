/**
 * The HAProxy configuration and map files. The config is written at start and on a pool-growing
 * reload only; everything else changes through the runtime API. Pure (text in, text out).
 */
import { isIP } from 'node:net';
import { join } from 'node:path';
import { backendName, groupById } from './pool.ts';
import { heldBackends, holdVar, heldCountVar, mapTables, serverTable, type MapTables } from './plan.ts';
import type { LbPaths, LbSettings, LbState } from './types.ts';

/** Where the lb keeps its files inside its state dir. */
export function lbPaths(dir: string): LbPaths {
  return {
    dir,
    config: join(dir, 'haproxy.cfg'),
    pidfile: join(dir, 'haproxy.pid'),
    adminSocket: join(dir, 'admin.sock'),
    masterSocket: join(dir, 'master.sock'),
    lua: join(dir, 'hold.lua'),
    hostMap: join(dir, 'hosts.map'),
    pathMap: join(dir, 'paths.map'),
    tcpMap: join(dir, 'tcp.map'),
    healthMap: join(dir, 'health.map'),
  };
}

/** Name of the backend that answers requests no route matches. */
export const NO_ROUTE_BACKEND = 'ferry_no_route';

/** HAProxy's spelling of an address and port (IPv6 needs the family prefix: the last colon is the port). */
function hostPort(address: string, port: number): string {
  return isIP(address) === 6 ? `ipv6@${address}:${port}` : `${address}:${port}`;
}

function ms(n: number): string {
  return `${Math.max(0, Math.round(n))}ms`;
}

/** Lines of one pooled backend; `state` fills its servers (reload), otherwise they start empty and disabled. */
function backendLines(gid: string, index: number, servers: number, settings: LbSettings, paths: LbPaths, state: LbState | undefined): string[] {
  const g = groupById(gid);
  if (!g) return [];
  const b = backendName(gid, index);
  const hold = `lua.ferry_hold ${b} ${settings.hold.maxWaitMs} ${settings.hold.maxQueue} if { var(${holdVar(b)}) -m int gt 0 }`;
  const out = [`backend ${b}`, `  mode ${g.mode}`, `  balance ${g.balance}`];
  if (g.mode === 'http') out.push('  retry-on conn-failure empty-response');
  if (g.sticky) out.push(`  cookie ${settings.cookie.name} insert indirect nocache dynamic`, `  dynamic-cookie-key ${settings.cookie.key}`);
  if (g.check === 'http') {
    out.push(
      '  option httpchk',
      // The path comes from a map at check time, so a service's health path changes with `set map`.
      `  http-check send meth GET uri-lf %[str(${b}),map(${paths.healthMap},/)] ver HTTP/1.1 hdr host ferry-lb`,
      '  http-check expect status 200-399',
    );
  }
  if (g.mode === 'http') {
    out.push(
      `  http-request ${hold}`,
      `  http-request return status 503 content-type text/plain string "held requests queue is full" hdr retry-after 1 if { var(txn.ferry_hold) -m str full }`,
    );
  } else {
    // A yielding content rule needs an inspect window; rules that do not wait are not delayed by it.
    out.push(
      `  tcp-request inspect-delay ${ms(settings.hold.maxWaitMs + 1000)}`,
      `  tcp-request content ${hold}`,
      '  tcp-request content reject if { var(txn.ferry_hold) -m str full }',
    );
  }
  out.push(`  default-server check inter ${ms(settings.check.interMs)} fall ${settings.check.fall} rise ${settings.check.rise}`);
  const table = state ? serverTable(state) : new Map();
  const occupied = [...table.keys()].some((k) => k.startsWith(`${b}/`));
  if (!occupied) {
    out.push(`  server-template s 1-${servers} 0.0.0.0:0 disabled`);
  } else {
    for (let i = 1; i <= servers; i++) {
      const e = table.get(`${b}/s${i}`);
      if (!e) out.push(`  server s${i} 0.0.0.0:0 disabled`);
      else out.push(`  server s${i} ${hostPort(e.address, e.port)} weight ${e.weight}${e.state === 'maint' ? ' disabled' : ''}`);
    }
  }
  return out;
}

/** The whole configuration for a pool shape, with `state` rendered in (servers, holds) when reloading. */
export function renderConfig(settings: LbSettings, paths: LbPaths, state: LbState): string {
  const held = heldBackends(state);
  const backends: string[][] = [];
  const vars: string[] = [];
  for (const [gid, size] of Object.entries(state.shape)) {
    for (let i = 0; i < size.slots; i++) {
      const b = backendName(gid, i);
      vars.push(`  set-var ${holdVar(b)} int(${held.has(b) ? 1 : 0})`, `  set-var ${heldCountVar(b)} int(0)`);
      backends.push(backendLines(gid, i, size.servers, settings, paths, state));
    }
  }
  const t = settings.timeouts;
  const lines = [
    '# Written by Ferry\'s lb. Run-time changes go through the runtime API; this file changes only when the pool grows.',
    'global',
    `  stats socket ${paths.adminSocket} mode 600 level admin expose-fd listeners`,
    '  stats timeout 30s',
    // Without this a second HAProxy could bind the same ports and silently share the traffic; reloads
    // do not need it (the new worker takes the listeners over the admin socket).
    '  noreuseport',
    `  lua-load ${paths.lua}`,
    ...(settings.nbthread ? [`  nbthread ${settings.nbthread}`] : []),
    ...(settings.hardStopAfterMs ? [`  hard-stop-after ${ms(settings.hardStopAfterMs)}`] : []),
    ...vars,
    '',
    'defaults',
    '  mode http',
    `  timeout connect ${ms(t.connectMs)}`,
    // Held requests wait before reaching a server, so the client side must outlast the longest hold.
    `  timeout client ${ms(Math.max(t.clientMs, settings.hold.maxWaitMs + 5000))}`,
    `  timeout server ${ms(t.serverMs)}`,
    '  timeout http-request 10s',
    '  timeout http-keep-alive 10s',
    '  timeout queue 10s',
    `  timeout check ${ms(settings.check.timeoutMs)}`,
    '  retries 2',
    '  option redispatch 1',
    '',
  ];
  if (settings.http) {
    lines.push(
      'frontend ferry_http',
      '  mode http',
      `  bind ${hostPort(settings.http.address, settings.http.port)}`,
      '  option forwardfor',
      // On a reload the old worker keeps idle keep-alive connections until their next request, answers
      // it with "Connection: close", and only then closes: no client races a closing socket.
      '  option idle-close-on-response',
      // Keys end in "/" so a prefix matches whole path segments; map_beg is a prefix tree: longest wins.
      '  http-request set-var-fmt(txn.ferry_key) "%[req.hdr(host),field(1,:),lower]%[path]/"',
      '  http-request set-var-fmt(txn.ferry_pkey) "%[path]/"',
      `  http-request set-var(txn.ferry_be) var(txn.ferry_key),map_beg(${paths.hostMap})`,
      `  http-request set-var(txn.ferry_be) var(txn.ferry_pkey),map_beg(${paths.pathMap}) unless { var(txn.ferry_be) -m found }`,
      '  use_backend %[var(txn.ferry_be)] if { var(txn.ferry_be) -m found }',
      `  default_backend ${NO_ROUTE_BACKEND}`,
      '',
      `backend ${NO_ROUTE_BACKEND}`,
      '  mode http',
      '  http-request return status 404 content-type text/plain string "no route at the entry point"',
      '',
    );
  }
  if (settings.tcp) {
    lines.push(
      'frontend ferry_tcp',
      '  mode tcp',
      `  bind ${hostPort(settings.tcp.address, settings.tcp.first)}${settings.tcp.last > settings.tcp.first ? `-${settings.tcp.last}` : ''}`,
      `  tcp-request connection reject unless { dst_port,map(${paths.tcpMap}) -m found }`,
      `  use_backend %[dst_port,map(${paths.tcpMap})]`,
      '',
    );
  }
  for (const b of backends) lines.push(...b, '');
  return lines.join('\n');
}

/** Map file contents for a state (`key value` lines), keyed like `MapTables`. */
export function renderMaps(state: LbState): Record<keyof MapTables, string> {
  const t = mapTables(state);
  const text = (m: Map<string, string>): string => [...m].map(([k, v]) => `${k} ${v}\n`).join('');
  return { host: text(t.host), path: text(t.path), tcp: text(t.tcp), health: text(t.health) };
}
