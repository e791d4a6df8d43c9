/**
 * The entry point process's control loop: watches the cluster through the manager's API, turns it
 * into routes (desired.ts) and applies them to HAProxy (Lb) — then tells the manager what is in
 * force: holds (a migration may freeze the replica) and drained replicas (they may go early).
 */
import type { FerryClient } from '../client/index.ts';
import type { Container, ContainerStatus, Retirement, Service } from '../model/index.ts';
import { keys } from '../model/index.ts';
import type { Lb } from './lb.ts';
import { desiredRoutes, mayChangeRoutes, plainContainers, type ClusterView, type HoldView, type PlainContainers } from './desired.ts';

/** What the loop needs. */
export interface EntryPointOptions {
  readonly client: FerryClient;
  /** This entry point's name (its lease and its hold acknowledgements carry it). */
  readonly name: string;
  readonly lb: Lb;
  readonly log: (m: string) => void;
  /** Its HTTP address as the manager reaches it (`http://ADDR:PORT`), announced with every heartbeat. */
  readonly httpUrl?: string;
  /** How often it renews its lease (default 2 s). */
  readonly heartbeatMs?: number;
  /** A full resync even without changes (default 10 s). */
  readonly resyncMs?: number;
}

/** A running entry-point loop. */
export interface EntryPoint {
  /** Resolves after the next sync that starts after the call has finished. */
  synced(): Promise<void>;
  stop(): Promise<void>;
}

/** The prefixes whose changes can change a route. */
const WATCHED = [keys.services, keys.containers, keys.statuses, keys.retirements, keys.holds];

/** Reads what the routes derive from. */
async function readView(client: FerryClient): Promise<ClusterView> {
  const [s, c, st, r, h] = await Promise.all([
    client.list<Service>(keys.services), client.list<Container>(keys.containers), client.list<ContainerStatus>(keys.statuses),
    client.list<Retirement>(keys.retirements), client.list<HoldView>(keys.holds),
  ]);
  const v = (x: { items: { value: unknown }[] }) => x.items.map((i) => i.value);
  return { services: v(s) as Service[], containers: v(c) as Container[], statuses: v(st) as ContainerStatus[], retirements: v(r) as Retirement[], holds: v(h) as HoldView[] };
}

/** Starts the loop: heartbeats, watches, syncs on every change (coalesced). */
export function startEntryPoint(o: EntryPointOptions): EntryPoint {
  const ac = new AbortController();
  let dirty = true;
  let wake: (() => void) | undefined;
  let waiters: (() => void)[] = [];
  const acked = new Set<string>();
  const reported = new Set<string>();
  const poke = (): void => { dirty = true; wake?.(); };
  // Containers of the last view that no route uses: their changes are not worth a sync.
  let plain: PlainContainers = { ids: new Set(), names: new Set() };

  const sync = async (): Promise<void> => {
    const view = await readView(o.client);
    plain = plainContainers(view);
    const routes = desiredRoutes(view);
    const r = await o.lb.apply(routes);
    if (r.reloaded) o.log(`entry point: HAProxy reloaded (${r.reason ?? 'pool grew'})`);
    if (r.commands.length > 0) o.log(`entry point: ${r.commands.join('; ')}`);
    // Holds now in force: acknowledge each once, so the migration can freeze.
    for (const h of view.holds) {
      const id = `${h.container}/${h.uid}`;
      if (acked.has(id)) continue;
      const a = await o.client.entryPoints.ackHold(h.container, o.name, h.uid).catch((e: Error) => { o.log(`entry point: ack hold ${h.container}: ${e.message}`); return undefined; });
      if (a) acked.add(id);
    }
    for (const id of [...acked]) if (!view.holds.some((h) => `${h.container}/${h.uid}` === id)) acked.delete(id);
    // Draining replicas with no session left may go before their deadline.
    const draining = view.retirements.filter((x) => !x.drained && !reported.has(`${x.container}/${x.uid}`));
    if (draining.length > 0) {
      const stats = await o.lb.stats();
      for (const x of draining) {
        const srv = stats.flatMap((s) => s.servers).find((s) => s.name === x.container);
        if (srv && srv.sessions > 0) continue;
        await o.client.entryPoints.drained(x.container, x.uid).catch((e: Error) => o.log(`entry point: drained ${x.container}: ${e.message}`));
        reported.add(`${x.container}/${x.uid}`);
      }
    }
    for (const id of [...reported]) if (!view.retirements.some((x) => `${x.container}/${x.uid}` === id)) reported.delete(id);
  };

  const worker = (async () => {
    while (!ac.signal.aborted) {
      if (!dirty) await new Promise<void>((r) => { wake = r; });
      wake = undefined;
      if (ac.signal.aborted) break;
      dirty = false;
      const mine = waiters;
      waiters = [];
      try {
        await sync();
      } catch (e) {
        o.log(`entry point: sync failed: ${(e as Error).message}`);
        dirty = true;
        await new Promise((r) => setTimeout(r, 500));
      }
      for (const w of mine) w();
    }
  })();

  const watchers = WATCHED.map(async (prefix) => {
    while (!ac.signal.aborted) {
      try {
        for await (const ev of await o.client.watch(prefix, { signal: ac.signal })) if (ev && mayChangeRoutes(ev, plain)) poke();
      } catch (e) {
        if (ac.signal.aborted) return;
        o.log(`entry point: watch ${prefix}: ${(e as Error).message}`);
      }
      if (!ac.signal.aborted) { poke(); await new Promise((r) => setTimeout(r, 500)); }
    }
  });

  const beat = async (): Promise<void> => {
    await o.client.entryPoints.heartbeat(o.name, { http: o.httpUrl }).catch((e: Error) => o.log(`entry point: heartbeat: ${e.message}`));
  };
  void beat();
  const heartbeat = setInterval(() => void beat(), o.heartbeatMs ?? 2000);
  const resync = setInterval(poke, o.resyncMs ?? 10_000);

  return {
    synced: () => new Promise<void>((r) => { waiters.push(r); poke(); }),
    async stop() {
      ac.abort();
      clearInterval(heartbeat);
      clearInterval(resync);
      wake?.();
      for (const w of waiters) w();
      await Promise.allSettled([worker, ...watchers]);
      await o.client.entryPoints.remove(o.name).catch(() => undefined);
    },
  };
}
