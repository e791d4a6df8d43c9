/**
 * Diff of desired routes against what HAProxy holds, as an ordered list of runtime API commands
 * (or, when the pool is too small, a reload with a bigger pool). Pure: no sockets, no files.
 *
 * Order keeps traffic flowing: health paths and holds of new backends first, then servers up,
 * then routing maps switched (adds before deletes), and only then old servers and backends retired.
 */
import { lbErrors } from './errors.ts';
import { allocate, growShape, type Shortage } from './pool.ts';
import { httpKeys, validateRoutes } from './routes.ts';
import type { LbPaths, LbRoute, LbServerState, LbSettings, LbState, PoolShape, RuntimeCommand } from './types.ts';

/** What one pooled server slot should hold. */
export interface ServerEntry {
  address: string;
  port: number;
  weight: number;
  state: LbServerState;
  /** Checks on (the route has a health check) or switched off. */
  health: boolean;
}

/** The four runtime maps, as key → value. */
export interface MapTables {
  host: Map<string, string>;
  path: Map<string, string>;
  tcp: Map<string, string>;
  health: Map<string, string>;
}

/** The empty state of a freshly started HAProxy with the given pool. */
export function emptyState(shape: PoolShape): LbState {
  return { shape, routes: {}, slots: {} };
}

/** Every occupied server slot (`backend/sN`) and what it should hold. */
export function serverTable(state: LbState): Map<string, ServerEntry> {
  const out = new Map<string, ServerEntry>();
  for (const [service, slot] of Object.entries(state.slots)) {
    const route = state.routes[service];
    if (!route) continue;
    for (const srv of route.servers) {
      const idx = slot.servers[srv.name];
      if (idx === undefined) continue;
      out.set(`${slot.backend}/s${idx}`, { address: srv.address, port: srv.port, weight: srv.weight ?? 1, state: srv.state, health: route.health !== undefined && srv.checks !== false });
    }
  }
  return out;
}

/** The routing and health maps a state implies. */
export function mapTables(state: LbState): MapTables {
  const t: MapTables = { host: new Map(), path: new Map(), tcp: new Map(), health: new Map() };
  for (const [service, slot] of Object.entries(state.slots)) {
    const route = state.routes[service];
    if (!route) continue;
    const keys = httpKeys(route);
    for (const k of keys.host) t.host.set(k, slot.backend);
    for (const k of keys.path) t.path.set(k, slot.backend);
    if (route.mode === 'tcp' && route.tcpPort !== undefined) t.tcp.set(String(route.tcpPort), slot.backend);
    if (route.health?.kind === 'http') t.health.set(slot.backend, route.health.path);
  }
  return t;
}

/** Backends whose new requests are held. */
export function heldBackends(state: LbState): Set<string> {
  const out = new Set<string>();
  for (const [service, slot] of Object.entries(state.slots)) if (state.routes[service]?.hold === true) out.add(slot.backend);
  return out;
}

/** Name of the proc variable the hold rule of `backend` reads. */
export function holdVar(backend: string): string {
  return `proc.ferry_hold_${backend}`;
}

/** Name of the proc variable where the hold action counts waiting requests of `backend`. */
export function heldCountVar(backend: string): string {
  return `proc.ferry_held_${backend}`;
}

/** Desired routes with `hold` resolved: an absent hold keeps what the service has now. */
export function resolveHolds(current: LbState, desired: readonly LbRoute[]): LbRoute[] {
  return desired.map((r) => ({ ...r, hold: r.hold ?? current.routes[r.service]?.hold ?? false }));
}

const ADDR_OK = /changed|no need to change/;

/** Runtime commands that turn a server slot from `was` into `want` (all fields when `was` is absent). */
function serverCommands(key: string, was: ServerEntry | undefined, want: ServerEntry): RuntimeCommand[] {
  const out: RuntimeCommand[] = [];
  if (!was || was.address !== want.address || was.port !== want.port) out.push({ command: `set server ${key} addr ${want.address} port ${want.port}`, ok: ADDR_OK });
  if (!was || was.weight !== want.weight) out.push({ command: `set server ${key} weight ${want.weight}` });
  if (!was || was.health !== want.health) out.push({ command: `${want.health ? 'enable' : 'disable'} health ${key}` });
  if (!was || was.state !== want.state) out.push({ command: `set server ${key} state ${want.state}` });
  return out;
}

function mapAddSet(file: string, was: Map<string, string>, want: Map<string, string>): RuntimeCommand[] {
  const out: RuntimeCommand[] = [];
  for (const [k, v] of want) {
    const old = was.get(k);
    if (old === undefined) out.push({ command: `add map ${file} ${k} ${v}` });
    else if (old !== v) out.push({ command: `set map ${file} ${k} ${v}` });
  }
  return out;
}

function mapDel(file: string, was: Map<string, string>, want: Map<string, string>): RuntimeCommand[] {
  return [...was.keys()].filter((k) => !want.has(k)).map((k) => ({ command: `del map ${file} ${k}` }));
}

function holdCommand(backend: string, on: boolean): RuntimeCommand {
  return { command: `experimental-mode on; set var ${holdVar(backend)} int(${on ? 1 : 0})` };
}

/** The ordered runtime commands that take HAProxy from `current` to `next` (same pool shape). */
export function diffCommands(current: LbState, next: LbState, paths: Pick<LbPaths, 'hostMap' | 'pathMap' | 'tcpMap' | 'healthMap'>): RuntimeCommand[] {
  const was = { servers: serverTable(current), maps: mapTables(current), held: heldBackends(current) };
  const want = { servers: serverTable(next), maps: mapTables(next), held: heldBackends(next) };
  const nextBackends = new Set(Object.values(next.slots).map((s) => s.backend));
  const out: RuntimeCommand[] = [];
  out.push(...mapAddSet(paths.healthMap, was.maps.health, want.maps.health));
  for (const b of want.held) if (!was.held.has(b)) out.push(holdCommand(b, true));
  for (const b of was.held) if (!want.held.has(b) && nextBackends.has(b)) out.push(holdCommand(b, false));
  for (const [key, entry] of want.servers) out.push(...serverCommands(key, was.servers.get(key), entry));
  for (const [file, kind] of [[paths.hostMap, 'host'], [paths.pathMap, 'path'], [paths.tcpMap, 'tcp']] as const) {
    out.push(...mapAddSet(file, was.maps[kind], want.maps[kind]));
  }
  for (const [file, kind] of [[paths.hostMap, 'host'], [paths.pathMap, 'path'], [paths.tcpMap, 'tcp']] as const) {
    out.push(...mapDel(file, was.maps[kind], want.maps[kind]));
  }
  for (const key of was.servers.keys()) if (!want.servers.has(key)) out.push({ command: `set server ${key} state maint` });
  out.push(...mapDel(paths.healthMap, was.maps.health, want.maps.health));
  // Released backends are un-held last so a reused slot starts clean (anything still waiting there meets maint servers).
  for (const b of was.held) if (!nextBackends.has(b)) out.push(holdCommand(b, false));
  return out;
}

/** What the config cannot say, applied after a reload: draining servers and switched-off checks. */
export function afterReloadCommands(next: LbState): RuntimeCommand[] {
  const out: RuntimeCommand[] = [];
  for (const [key, e] of serverTable(next)) {
    if (!e.health) out.push({ command: `disable health ${key}` });
    if (e.state === 'drain') out.push({ command: `set server ${key} state drain` });
  }
  return out;
}

/** A plan: runtime commands on the live pool, or a reload onto a bigger one. */
export type Plan =
  | { kind: 'runtime'; next: LbState; commands: RuntimeCommand[] }
  | { kind: 'reload'; next: LbState; reason: string; shortages: Shortage[] };

/** Plans the move from `current` to `desired`; throws on bad routes, or POOL_EXHAUSTED when it may not grow. */
export function planApply(
  current: LbState,
  desired: readonly LbRoute[],
  settings: Pick<LbSettings, 'http' | 'tcp'>,
  paths: Pick<LbPaths, 'hostMap' | 'pathMap' | 'tcpMap' | 'healthMap'>,
  options: { allowGrow: boolean },
): Plan {
  validateRoutes(desired, settings);
  const routes = resolveHolds(current, desired);
  const byName: Record<string, LbRoute> = {};
  for (const r of routes) byName[r.service] = r;
  const placed = allocate(current, routes, current.shape);
  if (placed.ok) {
    const next: LbState = { shape: current.shape, routes: byName, slots: placed.slots };
    return { kind: 'runtime', next, commands: diffCommands(current, next, paths) };
  }
  if (!options.allowGrow) {
    const s = placed.shortages[0]!;
    throw lbErrors.POOL_EXHAUSTED({ what: s.what === 'backend' ? 'backend' : 'server slot', group: s.group, have: s.have, need: s.need });
  }
  const shape = growShape(current.shape, placed.shortages);
  const again = allocate(current, routes, shape);
  if (!again.ok) throw lbErrors.POOL_EXHAUSTED({ what: 'capacity after growth', group: again.shortages[0]!.group, have: again.shortages[0]!.have, need: again.shortages[0]!.need });
  const reason = placed.shortages.map((s) => `group ${s.group} needs ${s.need} ${s.what === 'backend' ? 'backends' : 'server slots per backend'}, has ${s.have}`).join('; ');
  return { kind: 'reload', next: { shape, routes: byName, slots: again.slots }, reason, shortages: placed.shortages };
}
