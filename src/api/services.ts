/**
 * Service use cases on the manager: validate, write intent to the store. The services controller
 * keeps the replicas; the entry point routes to them.
 */
import { randomUUID } from 'node:crypto';
import type { Store } from '../store/index.ts';
import { mutate } from '../store/index.ts';
import { isFerryError } from '../errors/index.ts';
import type { Container, ContainerStatus, ReplicaView, Retirement, Service, ServiceSpec, ServiceView } from '../model/index.ts';
import {
  keys, checkName, defaultServiceSpec, isReplicaOf, isValidHost, normalizeHost, parseEnv, templateRevision, SERVICE_LABELS, TCP_PORT_RANGE,
} from '../model/index.ts';
import { apiErrors } from './errors.ts';
import { parseConstraint, WORKLOAD_CLASSES } from '../scheduler/index.ts';
import { imageExists } from './images.ts';

/** Input of a create: every field optional but the name and image. */
export type ServiceInput = Partial<ServiceSpec> & { name: string; image: string };

/** Input of an update: any spec field. */
export type ServiceChange = Partial<ServiceSpec>;

/** Replica names are `<service>-<5 hex>`, so the service name leaves room for that. */
const MAX_SERVICE_NAME = 57;

function invalid(name: string, reason: string): Error {
  return apiErrors.SERVICE_INVALID({ name, reason });
}

/** Checks a spec on its own (what the schema cannot say), normalizing host names. */
export function checkServiceSpec(name: string, spec: ServiceSpec): ServiceSpec {
  for (const e of spec.env) parseEnv(e);
  if (spec.http) {
    const hosts = spec.http.hosts.map(normalizeHost);
    for (const h of hosts) if (!isValidHost(h)) throw invalid(name, `"${h}" is not a host name (letters, digits, hyphens and dots, e.g. api.local)`);
    if (new Set(hosts).size !== hosts.length) throw invalid(name, 'a host name is listed twice');
    spec = { ...spec, http: { hosts, pathPrefix: spec.http.pathPrefix } };
  }
  if (spec.sticky && !spec.http) throw invalid(name, 'sticky sessions need HTTP routing (--http-host): they work by cookie');
  if (spec.health?.kind === 'http' && spec.tcpPort !== undefined && !spec.http) throw invalid(name, 'an HTTP health check needs an HTTP service; use --health tcp');
  if (spec.replicas > 0 && spec.update.maxSurge + spec.update.maxUnavailable < 1) {
    throw invalid(name, 'a rolling update with max-surge 0 and max-unavailable 0 can never replace a replica; allow at least one of them');
  }
  for (const c of spec.scheduling.constraints ?? []) {
    try {
      parseConstraint(c);
    } catch (e) {
      throw invalid(name, (e as Error).message);
    }
  }
  const cls = spec.scheduling.workloadClass;
  if (cls !== undefined && !(WORKLOAD_CLASSES as readonly string[]).includes(cls)) throw invalid(name, `workload class "${cls}" is not one of ${WORKLOAD_CLASSES.join(', ')}`);
  return spec;
}

/** Throws when another service already routes one of `spec`'s host/path pairs or its TCP port. */
async function checkRoutes(store: Store, name: string, spec: ServiceSpec): Promise<void> {
  const { items } = await store.list<Service>(keys.services);
  for (const { value: o } of items) {
    if (o.metadata.name === name) continue;
    if (spec.http && o.spec.http && o.spec.http.pathPrefix === spec.http.pathPrefix) {
      const clash = spec.http.hosts.find((h) => o.spec.http!.hosts.includes(h));
      if (clash) throw apiErrors.SERVICE_HOST_CLASH({ host: clash, path: spec.http.pathPrefix, holder: o.metadata.name });
    }
    if (spec.tcpPort !== undefined && o.spec.tcpPort === spec.tcpPort) {
      throw apiErrors.SERVICE_PORT_CLASH({ port: spec.tcpPort, holder: o.metadata.name, first: TCP_PORT_RANGE.first, last: TCP_PORT_RANGE.last });
    }
  }
}

async function checkReferences(store: Store, name: string, spec: ServiceSpec): Promise<void> {
  if (!(await imageExists(store, spec.image))) throw apiErrors.IMAGE_NOT_FOUND({ image: spec.image });
  if (spec.network !== undefined && spec.network !== 'default' && !(await store.get(keys.network(spec.network)))) {
    throw apiErrors.NETWORK_NOT_FOUND({ name: spec.network });
  }
  await checkRoutes(store, name, spec);
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** Validates input and writes a new Service; the controller creates its replicas. */
export async function createService(store: Store, input: ServiceInput): Promise<Service> {
  const name = checkName(input.name);
  if (name.length > MAX_SERVICE_NAME) throw invalid(name, `a service name has at most ${MAX_SERVICE_NAME} characters (its replicas add a suffix)`);
  const rest: Partial<ServiceSpec> & { name?: string } = stripUndefined({ ...input });
  delete rest.name;
  const spec = checkServiceSpec(name, { ...defaultServiceSpec(input.image), ...rest });
  await checkReferences(store, name, spec);
  const s: Service = {
    apiVersion: 'ferry/v1', kind: 'Service',
    metadata: { name, uid: randomUUID(), createdAt: new Date().toISOString(), generation: 1 }, spec,
  };
  try {
    await store.create(keys.service(name), s);
  } catch (e) {
    if (isFerryError(e, 'STORE_EXISTS')) throw apiErrors.SERVICE_EXISTS({ name });
    throw e;
  }
  return s;
}

/** Changes a service's spec (scale, new image, routing…); the controller rolls the replicas. */
export async function updateService(store: Store, name: string, change: ServiceChange): Promise<Service> {
  const cur = await store.get<Service>(keys.service(name));
  if (!cur) throw apiErrors.SERVICE_NOT_FOUND({ name });
  if (cur.value.metadata.deleting) throw apiErrors.SERVICE_DELETING({ name });
  const spec = checkServiceSpec(name, { ...cur.value.spec, ...stripUndefined(change) });
  if (change.image !== undefined || change.http !== undefined || change.tcpPort !== undefined || change.network !== undefined) await checkReferences(store, name, spec);
  return mutateService(store, name, (s) => {
    if (s.metadata.uid !== cur.value.metadata.uid) throw apiErrors.SERVICE_NOT_FOUND({ name });
    if (s.metadata.deleting) throw apiErrors.SERVICE_DELETING({ name });
    s.spec = { ...s.spec, ...stripUndefined(change), ...(spec.http ? { http: spec.http } : {}) };
    s.metadata.generation += 1;
    return s;
  });
}

/** Marks a service for removal: the controller drains and removes its replicas, then the object. */
export function deleteService(store: Store, name: string): Promise<Service> {
  return mutateService(store, name, (s) => {
    if (s.metadata.deleting) return undefined;
    s.metadata.deleting = true;
    s.metadata.generation += 1;
    return s;
  });
}

/** Read-modify-write of one service, with a missing one reported as SERVICE_NOT_FOUND. */
async function mutateService(store: Store, name: string, fn: (s: Service) => Service | undefined): Promise<Service> {
  try {
    return (await mutate<Service>(store, keys.service(name), fn)).value;
  } catch (e) {
    if (isFerryError(e, 'STORE_NOT_FOUND')) throw apiErrors.SERVICE_NOT_FOUND({ name });
    throw e;
  }
}

/** The views of every service (or of the one named), with each replica's node, address and placement reason. */
export async function serviceViews(store: Store, only?: string): Promise<ServiceView[]> {
  const [ss, cs, sts, rs] = await Promise.all([
    only ? store.get<Service>(keys.service(only)).then((kv) => ({ items: kv ? [kv] : [] })) : store.list<Service>(keys.services),
    store.list<Container>(keys.containers), store.list<ContainerStatus>(keys.statuses), store.list<Retirement>(keys.retirements),
  ]);
  if (only && ss.items.length === 0) throw apiErrors.SERVICE_NOT_FOUND({ name: only });
  const status = new Map(sts.items.map((kv) => [kv.value.name, kv.value]));
  const retiring = new Set(rs.items.map((kv) => kv.value.container));
  return ss.items.map(({ value: s }) => {
    const replicas: ReplicaView[] = cs.items.map((kv) => kv.value).filter((c) => isReplicaOf(c, s)).map((c) => {
      const st = status.get(c.metadata.name);
      const mine = st?.uid === c.metadata.uid ? st : undefined;
      return {
        name: c.metadata.name, node: c.placement?.node, ip: c.network?.ip ?? mine?.ip, phase: c.metadata.deleting ? 'removing' : mine?.phase ?? 'pending',
        revision: c.spec.labels[SERVICE_LABELS.revision] ?? '', reason: c.placement?.reason, retiring: retiring.has(c.metadata.name) || c.metadata.deleting === true,
        ...(mine?.message ? { message: mine.message } : {}),
      };
    }).sort((a, b) => a.name.localeCompare(b.name));
    const revision = templateRevision(s.spec);
    const ready = replicas.filter((r) => r.phase === 'running' && !r.retiring && r.revision === revision).length;
    return { service: s, revision, ready, replicas };
  }).sort((a, b) => a.service.metadata.name.localeCompare(b.service.metadata.name));
}
