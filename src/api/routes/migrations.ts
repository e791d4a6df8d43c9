/** /v1/migrations: start a live migration, follow it, cancel it. */
import { randomBytes, randomUUID } from 'node:crypto';
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { ApiDeps } from '../server.ts';
import { apiErrors } from '../errors.ts';
import { getContainer } from '../containers.ts';
import { mutate } from '../../store/index.ts';
import type { Container, Migration, Node } from '../../model/index.ts';
import { keys, SERVICE_LABELS } from '../../model/index.ts';
import { TERMINAL, type MigrationPhase } from '../../migration/index.ts';
import { placeEvacuee, type IncomingLoad } from '../../scheduler/index.ts';
import { nodeSnapshots } from '../../controllers/index.ts';
import { WaitQuery } from './schemas.ts';

const CreateMigration = Type.Object({
  container: Type.String({ minLength: 1 }),
  /** Absent: the scheduler picks a node other than the container's own. */
  to: Type.Optional(Type.String({ minLength: 1 })),
  strategy: Type.Optional(Type.Union([Type.Literal('auto'), Type.Literal('stop-copy'), Type.Literal('pre-copy'), Type.Literal('post-copy')])),
  check: Type.Optional(Type.Boolean()),
  /** The most the transfer between the agents may use, bytes per second. */
  bandwidthBytesPerSec: Type.Optional(Type.Integer({ minimum: 1 })),
}, { additionalProperties: false });
const Id = Type.Object({ id: Type.String({ minLength: 1 }) });

async function waitEnded(deps: ApiDeps, id: string, timeoutMs: number): Promise<Migration> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  try {
    const rev = await deps.store.revision();
    const cur = await deps.store.get<Migration>(keys.migration(id));
    if (!cur || TERMINAL.has(cur.value.status.phase as MigrationPhase)) return cur!.value;
    for await (const ev of deps.store.watch<Migration>(keys.migration(id), { afterRevision: rev, signal: ac.signal })) {
      if (ev.kv.key === keys.migration(id) && ev.type === 'put' && TERMINAL.has(ev.kv.value.status.phase as MigrationPhase)) return ev.kv.value;
    }
    throw apiErrors.TIMEOUT({ ms: timeoutMs, what: `migration ${id}` });
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
}

/** Picks the target of a migration that names none: the scheduler's choice among the other nodes. */
async function chooseTarget(store: ApiDeps['store'], c: Container, from: string): Promise<{ to: string; reason: string }> {
  const [snapshots, migrations, containers] = await Promise.all([
    nodeSnapshots(store), store.list<Migration>(keys.migrations), store.list<Container>(keys.containers),
  ]);
  const resources = new Map(containers.items.map((kv) => [kv.value.metadata.name, kv.value.spec.resources]));
  // Moves under way land on their target only at the switch; until then they reserve room there.
  const incoming: IncomingLoad[] = migrations.items
    .filter((kv) => !kv.value.spec.checkOnly && !TERMINAL.has(kv.value.status.phase as MigrationPhase))
    .map((kv) => ({ node: kv.value.spec.to, ...resources.get(kv.value.spec.container) }));
  const r = c.spec.resources;
  const d = placeEvacuee({ name: c.metadata.name, memoryBytes: r.memoryBytes, cpus: r.cpus, node: c.spec.node, service: c.spec.labels[SERVICE_LABELS.service], ...c.spec.scheduling }, from, snapshots, incoming);
  if (!d.ok) throw apiErrors.MIGRATION_NO_TARGET({ name: c.metadata.name, from, reason: d.reason });
  return { to: d.node, reason: `target ${d.node} chosen by the scheduler: ${d.reason}` };
}

/**
 * Until the prechecks resolve `auto` (src/migration/strategy.ts autoStrategy), the status says so
 * and shows stop-copy, the strategy auto falls back to.
 */
const AUTO_REASON = 'auto: decided at the prechecks from the container\'s memory and the target';

/** Migration routes. */
export function migrationRoutes(deps: ApiDeps): FastifyPluginAsync {
  return async (base) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    const { store } = deps;

    app.get('/migrations', { schema: { summary: 'List migrations, newest first' } }, async () =>
      (await store.list<Migration>(keys.migrations)).items.map((kv) => kv.value).sort((a, b) => b.metadata.createdAt.localeCompare(a.metadata.createdAt)));

    app.get('/migrations/:id', { schema: { summary: 'Inspect a migration', params: Id } }, async (req) => {
      const kv = await store.get<Migration>(keys.migration(req.params.id));
      if (!kv) throw apiErrors.MIGRATION_NOT_FOUND({ id: req.params.id });
      return kv.value;
    });

    app.post('/migrations', { schema: { summary: 'Live-migrate a running container to another node (the scheduler picks it when `to` is absent)', body: CreateMigration, querystring: WaitQuery } }, async (req, reply) => {
      const { container: name } = req.body;
      const strategy = req.body.strategy ?? 'auto';
      const view = await getContainer(store, name);
      const c = view.container;
      if (c.metadata.deleting) throw apiErrors.CONTAINER_DELETING({ name });
      if (req.body.to !== undefined && !(await store.get<Node>(keys.node(req.body.to)))) throw apiErrors.NODE_NOT_FOUND({ name: req.body.to });
      const from = view.status?.node || c.placement?.node;
      if (!from || view.status?.phase !== 'running') throw apiErrors.CONTAINER_NOT_RUNNING({ name, phase: view.status?.phase ?? 'pending' });
      if (from === req.body.to) throw apiErrors.BAD_REQUEST({ reason: `${name} already runs on ${req.body.to}` });
      const active = (await store.list<Migration>(keys.migrations)).items.find((kv) => kv.value.spec.container === name && !TERMINAL.has(kv.value.status.phase as MigrationPhase));
      if (active) throw apiErrors.MIGRATION_ACTIVE({ name, id: active.value.metadata.name });
      const { to, reason: chosen } = req.body.to !== undefined ? { to: req.body.to, reason: undefined } : await chooseTarget(store, c, from);
      const now = new Date().toISOString();
      const id = `mig-${randomBytes(4).toString('hex')}`;
      const m: Migration = {
        apiVersion: 'ferry/v1', kind: 'Migration',
        metadata: { name: id, uid: randomUUID(), createdAt: now },
        spec: {
          container: name, containerUid: c.metadata.uid, from, to, strategy, checkOnly: req.body.check === true,
          ...(req.body.bandwidthBytesPerSec ? { bandwidthBytesPerSec: req.body.bandwidthBytesPerSec } : {}),
        },
        status: {
          phase: 'Pending', strategy: strategy === 'auto' ? 'stop-copy' : strategy,
          strategyReason: strategy === 'auto' ? AUTO_REASON : 'asked for',
          round: 0, history: [{ phase: 'Pending', at: now, ...(chosen ? { message: chosen } : {}) }], checks: [], cancelRequested: false, bytes: 0,
        },
      };
      await store.create(keys.migration(id), m);
      const out = req.query.wait ? await waitEnded(deps, id, req.query.timeoutMs ?? 300_000) : m;
      return reply.status(201).send(out);
    });

    app.post('/migrations/:id/cancel', { schema: { summary: 'Cancel a migration (rolls back; refused once the target owns the container)', params: Id } }, async (req) => {
      const kv = await store.get<Migration>(keys.migration(req.params.id));
      if (!kv) throw apiErrors.MIGRATION_NOT_FOUND({ id: req.params.id });
      const phase = kv.value.status.phase as MigrationPhase;
      if (TERMINAL.has(phase)) throw apiErrors.BAD_REQUEST({ reason: `migration ${req.params.id} has already ended (${phase})` });
      if (phase === 'Switch' || phase === 'Cleanup') throw apiErrors.BAD_REQUEST({ reason: `too late to cancel: the container already runs on ${kv.value.spec.to}` });
      return (await mutate<Migration>(store, keys.migration(req.params.id), (m) => { m.status.cancelRequested = true; return m; })).value;
    });
  };
}
