/**
 * The pool of pre-provisioned backends. HAProxy 2.6 cannot add a backend or change its mode,
 * balance algorithm, cookie or check type at run time, so the base config carries a few backends
 * per combination of those (a group) and services are placed into free ones. Pure.
 */
import type { GroupKey, GroupShape, LbRoute, LbState, PoolShape, SlotAssignment } from './types.ts';

/** Every group the base config provisions (cookies are HTTP-only, so TCP has no sticky groups). */
export const GROUPS: readonly GroupKey[] = (() => {
  const out: GroupKey[] = [];
  for (const mode of ['http', 'tcp'] as const) {
    for (const balance of ['roundrobin', 'leastconn'] as const) {
      for (const sticky of mode === 'http' ? [false, true] : [false]) {
        for (const check of ['http', 'tcp'] as const) out.push({ mode, balance, sticky, check });
      }
    }
  }
  return out;
})();

/** Stable id of a group, also the prefix of its backends' names. */
export function groupId(g: GroupKey): string {
  return `${g.mode}_${g.balance === 'roundrobin' ? 'rr' : 'lc'}_${g.sticky ? 'sticky' : 'plain'}_${g.check}chk`;
}

/** The group a route needs; no health check means a TCP-check group with checks switched off per server. */
export function groupOf(route: LbRoute): GroupKey {
  return {
    mode: route.mode,
    balance: route.balance,
    sticky: route.mode === 'http' && route.sticky === true,
    check: route.health?.kind === 'http' ? 'http' : 'tcp',
  };
}

/** Name of backend `index` of group `gid`. */
export function backendName(gid: string, index: number): string {
  return `${gid}_${index}`;
}

/** Group id and index of a pooled backend's name. */
export function parseBackend(name: string): { gid: string; index: number } {
  const cut = name.lastIndexOf('_');
  return { gid: name.slice(0, cut), index: Number(name.slice(cut + 1)) };
}

/** The group behind a group id. */
export function groupById(gid: string): GroupKey | undefined {
  return GROUPS.find((g) => groupId(g) === gid);
}

/** The same size for every group. */
export function uniformShape(size: GroupShape): PoolShape {
  const out: PoolShape = {};
  for (const g of GROUPS) out[groupId(g)] = { ...size };
  return out;
}

/** A group that ran out: of backends (`need` backends in total) or of server slots (`need` per backend). */
export interface Shortage {
  group: string;
  what: 'backend' | 'server';
  have: number;
  need: number;
}

/** Result of placing the desired routes in the pool. */
export type Allocation = { ok: true; slots: Record<string, SlotAssignment> } | { ok: false; shortages: Shortage[] };

/**
 * Places each route in a backend of its group and each replica in a server slot, keeping what
 * already sits right. Slots freed in this same step are not reused for another service, so a
 * release and a placement never race on one backend.
 */
export function allocate(current: LbState, desired: readonly LbRoute[], shape: PoolShape): Allocation {
  const usedBackends = new Set(Object.values(current.slots).map((s) => s.backend));
  const taken = new Set<string>();
  const slots: Record<string, SlotAssignment> = {};
  const shortBackends = new Map<string, number>();
  const shortServers = new Map<string, number>();
  const pending: LbRoute[] = [];
  // Routes that stay in their backend go first so moved ones cannot take their place.
  for (const route of desired) {
    const gid = groupId(groupOf(route));
    const cur = current.slots[route.service];
    if (cur && parseBackend(cur.backend).gid === gid) {
      taken.add(cur.backend);
      const servers = placeServers(route, cur, shape[gid]?.servers ?? 0);
      if (servers) slots[route.service] = { backend: cur.backend, servers };
      else shortServers.set(gid, Math.max(shortServers.get(gid) ?? 0, route.servers.length));
    } else {
      pending.push(route);
    }
  }
  for (const route of pending) {
    const gid = groupId(groupOf(route));
    const size = shape[gid] ?? { slots: 0, servers: 0 };
    let backend: string | undefined;
    for (let i = 0; i < size.slots && backend === undefined; i++) {
      const name = backendName(gid, i);
      if (!usedBackends.has(name) && !taken.has(name)) backend = name;
    }
    if (backend === undefined) {
      shortBackends.set(gid, (shortBackends.get(gid) ?? 0) + 1);
      if (route.servers.length > size.servers) shortServers.set(gid, Math.max(shortServers.get(gid) ?? 0, route.servers.length));
      continue;
    }
    taken.add(backend);
    const servers = placeServers(route, undefined, size.servers);
    if (servers) slots[route.service] = { backend, servers };
    else shortServers.set(gid, Math.max(shortServers.get(gid) ?? 0, route.servers.length));
  }
  if (shortBackends.size === 0 && shortServers.size === 0) return { ok: true, slots };
  const shortages: Shortage[] = [];
  for (const [group, extra] of shortBackends) {
    const have = shape[group]?.slots ?? 0;
    shortages.push({ group, what: 'backend', have, need: have + extra });
  }
  for (const [group, need] of shortServers) shortages.push({ group, what: 'server', have: shape[group]?.servers ?? 0, need });
  return { ok: false, shortages };
}

/** Server slots for a route's replicas: kept ones stay, new ones take the lowest slot nobody used, then freed ones. */
function placeServers(route: LbRoute, cur: SlotAssignment | undefined, capacity: number): Record<string, number> | undefined {
  if (route.servers.length > capacity) return undefined;
  const out: Record<string, number> = {};
  const wanted = new Set(route.servers.map((s) => s.name));
  const everUsed = new Set<number>();
  for (const [name, idx] of Object.entries(cur?.servers ?? {})) {
    everUsed.add(idx);
    if (wanted.has(name)) out[name] = idx;
  }
  const inUse = new Set(Object.values(out));
  const free: number[] = [];
  for (let i = 1; i <= capacity; i++) if (!everUsed.has(i)) free.push(i);
  for (let i = 1; i <= capacity; i++) if (everUsed.has(i) && !inUse.has(i)) free.push(i);
  for (const s of route.servers) {
    if (out[s.name] !== undefined) continue;
    const idx = free.shift();
    if (idx === undefined) return undefined;
    out[s.name] = idx;
  }
  return out;
}

/** A bigger shape that covers the shortages (at least doubling what ran out, so growth is rare). */
export function growShape(shape: PoolShape, shortages: readonly Shortage[]): PoolShape {
  const out: PoolShape = {};
  for (const [k, v] of Object.entries(shape)) out[k] = { ...v };
  for (const s of shortages) {
    const g = out[s.group] ?? { slots: 0, servers: 1 };
    if (s.what === 'backend') g.slots = Math.max(g.slots * 2, s.need);
    else g.servers = Math.max(g.servers * 2, s.need);
    out[s.group] = g;
  }
  return out;
}
