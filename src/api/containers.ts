/** Container use cases on the manager: validate input, write intent to the store, wait for the agent. */
import { randomUUID } from 'node:crypto';
import type { Store } from '../store/index.ts';
import { mutate } from '../store/index.ts';
import { isFerryError } from '../errors/index.ts';
import type { Container, ContainerSpec, ContainerStatus, ContainerView, Node, Port } from '../model/index.ts';
import { keys, checkName, defaultSpec, isValidName, randomName } from '../model/index.ts';
import { apiErrors } from './errors.ts';
import { imageExists } from './images.ts';


/** Input of a create: a spec with every field optional but the image. */
export type CreateInput = Partial<ContainerSpec> & { image: string; name?: string };

/** Returns the container with its status, or throws CONTAINER_NOT_FOUND. */
export async function getContainer(store: Store, name: string): Promise<ContainerView> {
  const kv = await store.get<Container>(keys.container(name));
  if (!kv) throw apiErrors.CONTAINER_NOT_FOUND({ name });
  const st = await store.get<ContainerStatus>(keys.status(name));
  return { container: kv.value, status: st?.value.uid === kv.value.metadata.uid ? st.value : undefined };
}

/** Every container with its status, sorted by name. */
export async function listContainers(store: Store): Promise<ContainerView[]> {
  const [cs, ss] = await Promise.all([store.list<Container>(keys.containers), store.list<ContainerStatus>(keys.statuses)]);
  const byName = new Map(ss.items.map((s) => [s.value.name, s.value]));
  return cs.items.map(({ value }) => {
    const st = byName.get(value.metadata.name);
    return { container: value, status: st?.uid === value.metadata.uid ? st : undefined };
  });
}

function hostIpsClash(a: string, b: string): boolean {
  return a === b || a === '0.0.0.0' || b === '0.0.0.0';
}

/** Throws PORT_IN_USE when another container publishes one of `ports` (cluster-wide until the scheduler treats ports as a resource). */
async function checkPorts(store: Store, name: string, ports: Port[]): Promise<void> {
  const seen: Port[] = [];
  for (const p of ports) {
    if (seen.some((q) => q.hostPort === p.hostPort && hostIpsClash(q.hostIp, p.hostIp))) {
      throw apiErrors.BAD_REQUEST({ reason: `host port ${p.hostPort} is listed twice` });
    }
    seen.push(p);
  }
  const { items } = await store.list<Container>(keys.containers);
  for (const { value: other } of items) {
    if (other.metadata.name === name) continue;
    for (const q of other.spec.ports) {
      for (const p of ports) {
        if (q.hostPort === p.hostPort && hostIpsClash(q.hostIp, p.hostIp)) {
          throw apiErrors.PORT_IN_USE({ hostIp: p.hostIp, hostPort: p.hostPort, holder: other.metadata.name });
        }
      }
    }
  }
}

/** Validates input and writes a new Container; the controllers place it and the agent runs it. */
export async function createContainer(store: Store, input: CreateInput): Promise<Container> {
  const name = checkName(input.name ?? randomName());
  const spec: ContainerSpec = { ...defaultSpec(input.image), ...stripUndefined(input) };
  delete (spec as { name?: string }).name;
  if (!(await imageExists(store, spec.image))) throw apiErrors.IMAGE_NOT_FOUND({ image: spec.image });
  if (spec.node !== undefined && !(await store.get<Node>(keys.node(spec.node)))) throw apiErrors.NODE_NOT_FOUND({ name: spec.node });
  for (const v of spec.volumes) {
    const bind = (v.kind ?? 'bind') === 'bind';
    if (!v.target.startsWith('/') || (bind && !v.source.startsWith('/'))) throw apiErrors.BAD_REQUEST({ reason: `volume paths must be absolute: ${v.source}:${v.target}` });
    if (!bind && !isValidName(v.source)) throw apiErrors.BAD_REQUEST({ reason: `"${v.source}" is not a volume name (letters, digits, "_", "." and "-")` });
    if ([v.source, v.target].some((p) => p.split('/').includes('..'))) throw apiErrors.BAD_REQUEST({ reason: `volume paths may not contain "..": ${v.source}:${v.target}` });
  }
  await checkPorts(store, name, spec.ports);
  const container: Container = {
    apiVersion: 'ferry/v1', kind: 'Container',
    metadata: { name, uid: randomUUID(), createdAt: new Date().toISOString(), generation: 1 },
    spec,
  };
  try {
    await store.create(keys.container(name), container);
  } catch (e) {
    if (isFerryError(e, 'STORE_EXISTS')) throw apiErrors.CONTAINER_EXISTS({ name });
    throw e;
  }
  return container;
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** Read-modify-write of one container, with a missing one reported as CONTAINER_NOT_FOUND. */
async function mutateContainer(store: Store, name: string, fn: (c: Container) => Container | undefined): Promise<Container> {
  try {
    return (await mutate<Container>(store, keys.container(name), fn)).value;
  } catch (e) {
    if (isFerryError(e, 'STORE_NOT_FOUND')) throw apiErrors.CONTAINER_NOT_FOUND({ name });
    throw e;
  }
}

/** Applies `change` to the spec of a live container and bumps its generation. */
export function changeSpec(store: Store, name: string, change: (spec: ContainerSpec) => void): Promise<Container> {
  return mutateContainer(store, name, (c) => {
    if (c.metadata.deleting) throw apiErrors.CONTAINER_DELETING({ name });
    change(c.spec);
    c.metadata.generation += 1;
    return c;
  });
}

/** Marks the container for removal; the controllers stop it, clean the node, then delete the object. */
export function requestDelete(store: Store, name: string, force = false): Promise<Container> {
  return mutateContainer(store, name, (c) => {
    if (c.metadata.deleting && (!force || c.metadata.force)) return undefined;
    c.metadata.deleting = true;
    if (force) c.metadata.force = true;
    c.metadata.generation += 1;
    return c;
  });
}

/** Phases after which a container no longer changes by itself. */
const SETTLED = new Set(['running', 'stopped', 'exited', 'failed']);

/** True when the agent has applied the container's current generation and the phase has settled. */
export function isSettled(view: ContainerView): boolean {
  const st = view.status;
  if (!st || st.observedGeneration < view.container.metadata.generation) return false;
  if (view.container.spec.state === 'stopped') return st.phase !== 'running' && st.phase !== 'creating';
  return SETTLED.has(st.phase);
}

/** Waits (by watching the store) until `done(view)` holds, the container is gone (undefined), or the timeout passes. */
export async function waitForContainer(
  store: Store, name: string, done: (view: ContainerView | undefined) => boolean, timeoutMs: number,
): Promise<ContainerView | undefined> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  try {
    const rev = await store.revision();
    const current = await getContainer(store, name).catch(() => undefined);
    if (done(current)) return current;
    const relevant = (key: string): boolean => key === keys.container(name) || key === keys.status(name);
    for await (const ev of store.watch('/ferry/', { afterRevision: rev, signal: ac.signal })) {
      if (!relevant(ev.kv.key)) continue;
      const view = await getContainer(store, name).catch(() => undefined);
      if (done(view)) return view;
    }
    throw apiErrors.TIMEOUT({ ms: timeoutMs, what: `container "${name}"` });
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
}
