/**
 * What the entry point should route, from the cluster's state: pure, no I/O. Each service with HTTP
 * routing or a TCP port becomes a route; its running replicas are its servers. A retiring replica is
 * drained; a replica frozen by a migration leaves the rotation while others can serve, and when it is
 * the only one, new requests are held until it runs again.
 */
import type { Container, ContainerStatus, Retirement, Service } from '../model/index.ts';
import { isReplicaOf, keys, SERVICE_LABELS } from '../model/index.ts';
import type { LbRoute, LbServer } from './types.ts';

/** A hold as the entry point sees it (see the manager's holds). */
export interface HoldView {
  readonly container: string;
  readonly uid: string;
  readonly service: string;
}

/** The cluster state the routes derive from. */
export interface ClusterView {
  readonly services: readonly Service[];
  readonly containers: readonly Container[];
  readonly statuses: readonly ContainerStatus[];
  readonly retirements: readonly Retirement[];
  readonly holds: readonly HoldView[];
}

/** Suffix of the route of a service's TCP port when it also has HTTP routing. */
export const TCP_ROUTE_SUFFIX = '.tcp';

/** The routes for `view`, sorted by service name. */
export function desiredRoutes(view: ClusterView): LbRoute[] {
  const status = new Map(view.statuses.map((s) => [s.name, s]));
  const retiring = new Set(view.retirements.map((r) => `${r.container}/${r.uid}`));
  const held = new Set(view.holds.map((h) => `${h.container}/${h.uid}`));
  const routes: LbRoute[] = [];
  for (const s of [...view.services].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))) {
    if (!s.spec.http && s.spec.tcpPort === undefined) continue;
    const servers: LbServer[] = [];
    let frozen = 0;
    for (const c of view.containers.filter((x) => isReplicaOf(x, s)).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))) {
      const st = status.get(c.metadata.name);
      const mine = st && st.uid === c.metadata.uid ? st : undefined;
      const ip = c.network?.ip ?? mine?.ip;
      const id = `${c.metadata.name}/${c.metadata.uid}`;
      const isHeld = held.has(id);
      // Just moved: the report is still the old node's (its copy killed) until the new node reports;
      // the address moved with the container, so it stays in the rotation.
      const inTransit = mine !== undefined && c.placement !== undefined && mine.node !== c.placement.node;
      if (!ip || (!isHeld && !inTransit && mine?.phase !== 'running')) continue;
      if (isHeld) frozen += 1;
      const state = retiring.has(id) || c.metadata.deleting ? 'drain' : isHeld ? 'maint' : 'ready';
      // A frozen replica fails its checks; paused, it is up again the moment it runs.
      servers.push({ name: c.metadata.name, address: ip, port: s.spec.port, state, ...(isHeld ? { checks: false } : {}) });
    }
    const hold = frozen > 0 && !servers.some((x) => x.state === 'ready');
    // The only replica frozen: it keeps its slot (ready) so held requests go to it once it runs again.
    if (hold) for (const x of servers) if (x.state === 'maint') x.state = 'ready';
    const base = { balance: s.spec.balance, servers, hold, ...(s.spec.health ? { health: s.spec.health } : {}) };
    if (s.spec.http) {
      routes.push({ service: s.metadata.name, mode: 'http', hosts: s.spec.http.hosts, pathPrefix: s.spec.http.pathPrefix, sticky: s.spec.sticky, ...base });
    }
    if (s.spec.tcpPort !== undefined) {
      const health = s.spec.health?.kind === 'tcp' || !s.spec.http ? base.health : { kind: 'tcp' as const };
      routes.push({
        service: s.spec.http ? `${s.metadata.name}${TCP_ROUTE_SUFFIX}` : s.metadata.name, mode: 'tcp', tcpPort: s.spec.tcpPort,
        ...base, ...(health ? { health } : {}), servers: servers.map((x) => ({ ...x })),
      });
    }
  }
  return routes;
}

/** The containers of a view that no route can use (no service's replicas): by `name/uid`, and by name. */
export interface PlainContainers {
  readonly ids: ReadonlySet<string>;
  readonly names: ReadonlySet<string>;
}

/** The plain containers of `view` (a replica carries its service's uid as a label for its whole life). */
export function plainContainers(view: Pick<ClusterView, 'containers'>): PlainContainers {
  const plain = view.containers.filter((c) => c.spec.labels[SERVICE_LABELS.serviceUid] === undefined);
  return { ids: new Set(plain.map((c) => `${c.metadata.name}/${c.metadata.uid}`)), names: new Set(plain.map((c) => c.metadata.name)) };
}

/** A watch frame as the entry point receives it. */
export interface ViewFrame {
  readonly type: 'put' | 'delete';
  readonly key: string;
  readonly value?: unknown;
}

/**
 * Whether a frame can change the routes, given the plain containers of the last view: a change to a
 * container known to be plain (its spec, placement, status, or its removal) cannot, and skipping it
 * keeps a host that starts many plain containers (a failover, a deploy) from making the entry point
 * re-read the cluster once per status report. Everything else can; unknown containers count.
 */
export function mayChangeRoutes(f: ViewFrame, plain: PlainContainers): boolean {
  const prefix = f.key.startsWith(keys.containers) ? keys.containers : f.key.startsWith(keys.statuses) ? keys.statuses : undefined;
  if (prefix === undefined) return true;
  if (f.type === 'delete') return !plain.names.has(f.key.slice(prefix.length));
  if (prefix === keys.containers) {
    const c = f.value as Partial<Container> | undefined;
    if (!c?.metadata || !c.spec || c.spec.labels?.[SERVICE_LABELS.serviceUid] !== undefined) return true;
    return !plain.ids.has(`${c.metadata.name}/${c.metadata.uid}`);
  }
  const st = f.value as Partial<ContainerStatus> | undefined;
  return !st?.name || !plain.ids.has(`${st.name}/${st.uid}`);
}
