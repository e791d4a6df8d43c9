/**
 * Route validation and the map keys a route occupies. Pure: the same checks run before any runtime
 * command, so a bad or clashing route changes nothing.
 */
import { isIP } from 'node:net';
import { lbErrors } from './errors.ts';
import type { LbRoute, LbSettings } from './types.ts';

const SERVICE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const SERVER_NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const HOST_NAME = /^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/;
// Map keys and runtime commands are split on blanks, so paths carry none (nor query or fragment).
const PATH = /^\/[^\s?#]*$/;

/** The path prefix as stored in map keys: no trailing slash, '' for the root. */
export function normalPrefix(prefix: string | undefined): string {
  if (prefix === undefined) return '';
  return prefix.replace(/\/+$/, '');
}

/** Map keys of an HTTP route: `host<prefix>/` in the host map, `<prefix>/` in the any-host map. */
export function httpKeys(route: LbRoute): { host: string[]; path: string[] } {
  if (route.mode !== 'http') return { host: [], path: [] };
  const prefix = `${normalPrefix(route.pathPrefix)}/`;
  if (!route.hosts || route.hosts.length === 0) return { host: [], path: [prefix] };
  return { host: route.hosts.map((h) => `${h.toLowerCase()}${prefix}`), path: [] };
}

/** A readable form of a map key for clash messages. */
function describeKey(key: string, anyHost: boolean): string {
  if (anyHost) return `any host, path prefix ${key.length > 1 ? key.slice(0, -1) : '/'}`;
  const slash = key.indexOf('/');
  const path = key.slice(slash, -1) || '/';
  return `host ${key.slice(0, slash)}, path prefix ${path}`;
}

function bad(service: string, reason: string): never {
  throw lbErrors.BAD_ROUTE({ service, reason });
}

/** Checks one route on its own (names, mode-specific fields, servers); throws BAD_ROUTE or PORT_OUT_OF_RANGE. */
export function validateRoute(route: LbRoute, settings: Pick<LbSettings, 'http' | 'tcp'>): void {
  const s = typeof route.service === 'string' ? route.service : String(route.service);
  if (!SERVICE_NAME.test(s)) bad(s, 'service names are 1–63 letters, digits, ".", "_" or "-"');
  if (route.balance !== 'roundrobin' && route.balance !== 'leastconn') bad(s, `balance must be roundrobin or leastconn, not ${String(route.balance)}`);
  if (route.mode === 'http') {
    if (!settings.http) bad(s, 'HTTP routes need the lb to have an HTTP entry point (options.http)');
    if (route.tcpPort !== undefined) bad(s, 'tcpPort is for mode tcp');
    for (const h of route.hosts ?? []) {
      if (typeof h !== 'string' || !HOST_NAME.test(h.toLowerCase())) bad(s, `"${String(h)}" is not a host name (no port, no wildcard)`);
    }
    if (route.pathPrefix !== undefined && (typeof route.pathPrefix !== 'string' || !PATH.test(route.pathPrefix))) {
      bad(s, `path prefix "${String(route.pathPrefix)}" must start with "/" and hold no blanks, "?" or "#"`);
    }
  } else if (route.mode === 'tcp') {
    if (route.hosts !== undefined || route.pathPrefix !== undefined) bad(s, 'hosts and pathPrefix are for mode http');
    if (route.sticky) bad(s, 'sticky sessions use a cookie, so they are for mode http');
    if (!Number.isInteger(route.tcpPort)) bad(s, 'mode tcp needs an integer tcpPort');
    const range = settings.tcp;
    const port = route.tcpPort as number;
    if (!range || port < range.first || port > range.last) {
      throw lbErrors.PORT_OUT_OF_RANGE({ service: s, port, range: range ? `${range.first}-${range.last}` : 'none (no TCP entry point configured)' });
    }
  } else {
    bad(s, `mode must be http or tcp, not ${String(route.mode)}`);
  }
  if (route.health !== undefined) {
    if (route.health.kind === 'http') {
      if (typeof route.health.path !== 'string' || !PATH.test(route.health.path)) bad(s, `health path "${String(route.health.path)}" must start with "/" and hold no blanks`);
    } else if (route.health.kind !== 'tcp') {
      bad(s, 'health kind must be http or tcp');
    }
  }
  if (!Array.isArray(route.servers)) bad(s, 'servers must be a list');
  const names = new Set<string>();
  for (const srv of route.servers) {
    if (typeof srv.name !== 'string' || !SERVER_NAME.test(srv.name)) bad(s, `server name "${String(srv.name)}" must be letters, digits, ".", "_", ":" or "-"`);
    if (names.has(srv.name)) bad(s, `server "${srv.name}" is listed twice`);
    names.add(srv.name);
    if (typeof srv.address !== 'string' || isIP(srv.address) === 0) bad(s, `server "${srv.name}": "${String(srv.address)}" is not an IP address`);
    if (!Number.isInteger(srv.port) || srv.port < 1 || srv.port > 65535) bad(s, `server "${srv.name}": port ${String(srv.port)} is not 1–65535`);
    if (srv.weight !== undefined && (!Number.isInteger(srv.weight) || srv.weight < 0 || srv.weight > 256)) bad(s, `server "${srv.name}": weight ${String(srv.weight)} is not 0–256`);
    if (srv.state !== 'ready' && srv.state !== 'drain' && srv.state !== 'maint') bad(s, `server "${srv.name}": state must be ready, drain or maint`);
  }
}

/** Checks a whole desired set: each route, unique services, no two services on one host route or TCP port. */
export function validateRoutes(routes: readonly LbRoute[], settings: Pick<LbSettings, 'http' | 'tcp'>): void {
  const services = new Set<string>();
  const hostOwner = new Map<string, string>();
  const pathOwner = new Map<string, string>();
  const portOwner = new Map<number, string>();
  for (const r of routes) {
    validateRoute(r, settings);
    if (services.has(r.service)) bad(r.service, 'service is listed twice');
    services.add(r.service);
    const keys = httpKeys(r);
    for (const [list, owner, anyHost] of [[keys.host, hostOwner, false], [keys.path, pathOwner, true]] as const) {
      for (const k of list) {
        const other = owner.get(k);
        if (other !== undefined && other !== r.service) throw lbErrors.HOST_CLASH({ service: r.service, other, route: describeKey(k, anyHost) });
        owner.set(k, r.service);
      }
    }
    if (r.mode === 'tcp' && r.tcpPort !== undefined) {
      const other = portOwner.get(r.tcpPort);
      if (other !== undefined) throw lbErrors.TCP_PORT_CLASH({ service: r.service, other, port: r.tcpPort });
      portOwner.set(r.tcpPort, r.service);
    }
  }
}
