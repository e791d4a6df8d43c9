/**
 * The services controller: keeps each service's replicas (containers named `<service>-<5 hex>`) at
 * the wanted count and template, rolling them on a change, and retires replicas gracefully: a
 * retiring replica is drained by the entry point (no new requests, time to finish the ones it has)
 * before its container is removed.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { Store } from '../store/index.ts';
import { mutate, put, remove } from '../store/index.ts';
import { isFerryError } from '../errors/index.ts';
import type { Container, ContainerStatus, Retirement, Service } from '../model/index.ts';
import { keys, isReplicaOf, replicaTemplate, templateRevision, SERVICE_LABELS } from '../model/index.ts';
import { startLoop, type Loop } from './loop.ts';
import { planReplicas, type ReplicaState } from './replicas.ts';

/** The service a replica name belongs to (`web-1a2b3` → `web`). */
export function serviceOfReplica(name: string): string | undefined {
  const m = /^(.+)-[0-9a-f]{5}$/.exec(name);
  return m?.[1];
}

function isReady(c: Container, st: ContainerStatus | undefined): boolean {
  return st !== undefined && st.uid === c.metadata.uid && st.phase === 'running' && st.observedGeneration >= c.metadata.generation;
}

/** A new replica of `s` (not yet stored). */
function newReplica(s: Service, revision: string): Container {
  const t = replicaTemplate(s.spec);
  return {
    apiVersion: 'ferry/v1', kind: 'Container',
    metadata: { name: `${s.metadata.name}-${randomBytes(3).toString('hex').slice(0, 5)}`, uid: randomUUID(), createdAt: new Date().toISOString(), generation: 1 },
    spec: { ...t, labels: { ...t.labels, [SERVICE_LABELS.service]: s.metadata.name, [SERVICE_LABELS.serviceUid]: s.metadata.uid, [SERVICE_LABELS.revision]: revision } },
  };
}

/** Marks a container for removal (as `ferry rm` does). */
async function removeContainer(store: Store, name: string, uid: string): Promise<void> {
  try {
    await mutate<Container>(store, keys.container(name), (c) => {
      if (c.metadata.uid !== uid || c.metadata.deleting) return undefined;
      c.metadata.deleting = true;
      c.metadata.generation += 1;
      return c;
    });
  } catch (e) {
    if (!isFerryError(e, 'STORE_NOT_FOUND')) throw e;
  }
}

/** What reconciling a service did, and when it wants to look again (a drain deadline). */
export interface ServiceStep {
  readonly created: string[];
  readonly retired: string[];
  readonly removed: string[];
  readonly recheckAt?: number;
}

/** Reconciles service `name` once. */
export async function reconcileService(store: Store, name: string, now = Date.now()): Promise<ServiceStep> {
  const step = { created: [] as string[], retired: [] as string[], removed: [] as string[], recheckAt: undefined as number | undefined };
  const kv = await store.get<Service>(keys.service(name));
  const [cs, sts, rs] = await Promise.all([store.list<Container>(keys.containers), store.list<ContainerStatus>(keys.statuses), store.list<Retirement>(keys.retirements)]);
  const status = new Map(sts.items.map((x) => [x.value.name, x.value]));
  const s = kv?.value;
  const mine = (c: Container): boolean => (s ? isReplicaOf(c, s) : c.spec.labels[SERVICE_LABELS.service] === name);
  const replicas = cs.items.map((x) => x.value).filter(mine);
  const byName = new Map(replicas.map((c) => [c.metadata.name, c]));

  // Retirements: remove the container once drained or past the deadline; forget records of gone containers.
  const retiring = new Set<string>();
  for (const { value: r } of rs.items.filter((x) => x.value.service === name)) {
    const c = byName.get(r.container);
    if (!c || c.metadata.uid !== r.uid) {
      await remove(store, keys.retirement(r.container));
      continue;
    }
    retiring.add(r.container);
    const until = Date.parse(r.until);
    if (r.drained || now >= until) {
      await removeContainer(store, c.metadata.name, c.metadata.uid);
      step.removed.push(c.metadata.name);
    } else step.recheckAt = Math.min(step.recheckAt ?? Infinity, until);
  }

  if (!s) return step;
  const live = replicas.filter((c) => !c.metadata.deleting && !retiring.has(c.metadata.name));
  if (s.metadata.deleting && replicas.length === 0) {
    await store.delete(kv!.key, kv!.modRevision).catch((e: unknown) => { if (!isFerryError(e, 'STORE_CONFLICT') && !isFerryError(e, 'STORE_NOT_FOUND')) throw e; });
    return step;
  }
  const revision = templateRevision(s.spec);
  const states: ReplicaState[] = live.map((c) => ({
    name: c.metadata.name, revision: c.spec.labels[SERVICE_LABELS.revision] ?? '', ready: isReady(c, status.get(c.metadata.name)), createdAt: c.metadata.createdAt,
  }));
  const plan = planReplicas({ replicas: s.spec.replicas, revision, maxSurge: s.spec.update.maxSurge, maxUnavailable: s.spec.update.maxUnavailable, deleting: s.metadata.deleting }, states);
  for (const r of plan.retire) {
    const c = byName.get(r)!;
    const at = new Date(now);
    // A replica that never ran has nothing to drain.
    const drainMs = isReady(c, status.get(r)) ? s.spec.drainMs : 0;
    const rec: Retirement = { service: name, container: r, uid: c.metadata.uid, startedAt: at.toISOString(), until: new Date(now + drainMs).toISOString() };
    await put(store, keys.retirement(r), rec);
    step.retired.push(r);
    step.recheckAt = Math.min(step.recheckAt ?? Infinity, now + drainMs);
  }
  for (let i = 0; i < plan.create; i++) {
    const c = newReplica(s, revision);
    try {
      await store.create(keys.container(c.metadata.name), c);
      step.created.push(c.metadata.name);
    } catch (e) {
      if (!isFerryError(e, 'STORE_EXISTS')) throw e; // a name collision: the next pass makes another
    }
  }
  return step;
}

/** Starts the services controller. Changes of replicas, their status or retirements re-queue their service. */
export function startServicesController(store: Store, onError?: (name: string, e: unknown) => void): Loop {
  const timers = new Set<NodeJS.Timeout>();
  const listNames = async (): Promise<string[]> => {
    const [ss, rs] = await Promise.all([store.list<Service>(keys.services), store.list<Retirement>(keys.retirements)]);
    return [...new Set([...ss.items.map((kv) => kv.value.metadata.name), ...rs.items.map((kv) => kv.value.service)])];
  };
  const loop = startLoop({
    store, prefixes: [keys.services, keys.containers, keys.statuses, keys.retirements], listNames, onError, resyncMs: 10_000,
    reconcile: async (key) => {
      // Keys of replicas, statuses and retirements name a container; map them to their service.
      const name = (await store.get(keys.service(key))) ? key : serviceOfReplica(key);
      if (!name) return;
      const step = await reconcileService(store, name);
      if (step.recheckAt !== undefined) {
        const t = setTimeout(() => { timers.delete(t); loop.enqueue(name); }, Math.max(0, step.recheckAt - Date.now()) + 5);
        t.unref();
        timers.add(t);
      }
    },
  });
  return {
    stop: async () => { for (const t of timers) clearTimeout(t); await loop.stop(); },
    idle: () => loop.idle(),
  };
}
