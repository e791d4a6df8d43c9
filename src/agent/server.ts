/** The agent's HTTP API: what the manager passes through to a node (logs, exec, stats, images). */
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import Fastify, { type FastifyInstance, type FastifyError } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { FerryError } from '../errors/index.ts';
import type { Assignment, ImageRecord } from '../model/index.ts';
import { AssignmentSchema, PortSchema } from '../model/index.ts';
import type { MigrationAgent } from './migrate.ts';
import type { ContainerRuntime } from './runtime/index.ts';
import type { ImageStore, ImageInfo } from './images/index.ts';
import { agentErrors } from './errors.ts';

/** What the agent API serves from. */
export interface AgentApiDeps {
  readonly node: string;
  /** Bearer tokens this API accepts. */
  readonly token: string | readonly string[];
  readonly runtime: ContainerRuntime;
  readonly images: ImageStore;
  readonly spoolDir: string;
  /** True when the runtime id belongs to a container this agent manages. */
  readonly knows: (runtimeId: string) => boolean;
  /** Called after the image set changed, to report it to the manager. */
  readonly imagesChanged: () => Promise<void>;
  /** This node's half of live migrations. */
  readonly migrations: MigrationAgent;
  /** Milliseconds since this agent's last successful heartbeat (peers ask before they fence themselves). */
  readonly managerOkAgoMs?: () => number;
}

/** The record form of an image, as agents report it. */
export function imageRecord(i: ImageInfo): ImageRecord {
  return { id: i.id, tags: i.tags, size: i.size, created: i.created, architecture: i.architecture, os: i.os, layers: i.layers, config: i.config };
}

/** Builds the agent API. */
export async function buildAgentApi(deps: AgentApiDeps): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, forceCloseConnections: true }).withTypeProvider<TypeBoxTypeProvider>();
  app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));
  app.addHook('onRequest', async (req) => {
    if (req.url === '/healthz') return;
    const m = /^Bearer\s+(.+)$/.exec(req.headers.authorization ?? '');
    if (!m || !(Array.isArray(deps.token) ? deps.token : [deps.token]).includes(m[1] as string)) throw new FerryError('FERRY_ERR_UNAUTHORIZED', 401, 'missing or wrong agent token');
  });
  app.setErrorHandler((err: FastifyError | FerryError, _req, reply) => {
    const fe = err instanceof FerryError ? err
      : (err as FastifyError).validation ? agentErrors.BAD_REQUEST({ reason: err.message })
        : new FerryError('FERRY_ERR_INTERNAL', (err as FastifyError).statusCode ?? 500, err.message);
    void reply.status(fe.status).send(fe.toJSON());
  });

  const Id = Type.Object({ id: Type.String() });
  const known = (id: string): void => {
    if (!deps.knows(id)) throw agentErrors.CONTAINER_NOT_FOUND({ id });
  };

  app.get('/healthz', async () => ({ ok: true, node: deps.node }));
  app.get('/v1/contact', async () => ({ managerOkAgoMs: deps.managerOkAgoMs?.() ?? 0 }));

  app.get('/v1/containers/:id/logs', {
    schema: { params: Id, querystring: Type.Object({ follow: Type.Optional(Type.Boolean()), tail: Type.Optional(Type.Integer({ minimum: 0 })) }) },
  }, async (req, reply) => {
    known(req.params.id);
    const ac = new AbortController();
    req.raw.on('close', () => ac.abort());
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'application/x-ndjson' });
    try {
      for await (const e of deps.runtime.logs(req.params.id, { follow: req.query.follow, tail: req.query.tail, signal: ac.signal })) {
        if (!reply.raw.write(`${JSON.stringify(e)}\n`)) await new Promise((r) => reply.raw.once('drain', r));
      }
    } catch (e) {
      if (!ac.signal.aborted) reply.raw.write(`${JSON.stringify({ error: { code: (e as FerryError).code ?? 'FERRY_ERR_INTERNAL', message: (e as Error).message } })}\n`);
    } finally {
      reply.raw.end();
    }
  });

  app.post('/v1/containers/:id/exec', {
    schema: {
      params: Id,
      body: Type.Object({ args: Type.Array(Type.String(), { minItems: 1 }), env: Type.Optional(Type.Array(Type.String())), cwd: Type.Optional(Type.String()), stdin: Type.Optional(Type.String()) }),
    },
  }, async (req, reply) => {
    known(req.params.id);
    const ac = new AbortController();
    reply.raw.on('close', () => { if (!reply.raw.writableFinished) ac.abort(); });
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'application/x-ndjson' });
    const frame = (o: object): void => { reply.raw.write(`${JSON.stringify(o)}\n`); };
    try {
      const code = await deps.runtime.exec(req.params.id, {
        args: req.body.args, env: req.body.env, cwd: req.body.cwd,
        stdin: req.body.stdin !== undefined ? Buffer.from(req.body.stdin, 'base64') : undefined,
        onStdout: (c) => frame({ stream: 'stdout', data: Buffer.from(c).toString('base64') }),
        onStderr: (c) => frame({ stream: 'stderr', data: Buffer.from(c).toString('base64') }),
        signal: ac.signal,
      });
      frame({ exitCode: code });
    } catch (e) {
      frame({ error: { code: (e as FerryError).code ?? 'FERRY_ERR_INTERNAL', message: (e as Error).message } });
    } finally {
      reply.raw.end();
    }
  });

  app.get('/v1/containers/:id/stats', { schema: { params: Id } }, async (req) => {
    known(req.params.id);
    return deps.runtime.stats(req.params.id);
  });

  app.get('/v1/images', async () => (await deps.images.list()).map(imageRecord));

  app.post('/v1/images/import', {
    schema: { querystring: Type.Object({ name: Type.Optional(Type.String()) }) },
    bodyLimit: 64 * 1024 ** 3,
  }, async (req) => {
    await mkdir(deps.spoolDir, { recursive: true });
    const spool = join(deps.spoolDir, `upload-${randomUUID()}`);
    try {
      await pipeline(req.body as Readable, createWriteStream(spool));
      const info = await deps.images.import(spool, { name: req.query.name });
      await deps.imagesChanged();
      return imageRecord(info);
    } finally {
      await rm(spool, { force: true, recursive: true });
    }
  });

  app.delete('/v1/images/:ref', { schema: { params: Type.Object({ ref: Type.String() }), querystring: Type.Object({ force: Type.Optional(Type.Boolean()) }) } }, async (req, reply) => {
    await deps.images.remove(req.params.ref, { force: req.query.force });
    await deps.imagesChanged();
    return reply.status(204).send();
  });

  const Mid = Type.Object({ id: Type.String({ pattern: '^[a-z0-9-]{1,64}$' }) });
  app.get('/v1/migrate/:id/received', { schema: { params: Mid } }, async (req) => deps.migrations.received(req.params.id));
  const Expect = Type.Optional(Type.Integer({ minimum: 0 }));
  const VolumeNames = Type.Array(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]*$', maxLength: 128 }), { maxItems: 64 });
  app.post('/v1/migrate/:id/pack-volumes', {
    schema: { params: Mid, body: Type.Object({ name: Type.String(), volumes: VolumeNames }) },
  }, async (req) => deps.migrations.packVolumes(req.params.id, req.body.name, req.body.volumes));
  app.post('/v1/migrate/:id/fetch-volumes', {
    schema: { params: Mid, body: Type.Object({ source: Type.String(), volumes: VolumeNames, bytesPerSec: Type.Optional(Type.Integer({ minimum: 0 })) }) },
  }, async (req) => deps.migrations.fetchVolumes(req.params.id, req.body.source, req.body.volumes, req.body.bytesPerSec));
  // --strategy auto: the container's write rate (source) and the link's speed (a probe the target fetches).
  app.post('/v1/migrate/:id/measure-writes', {
    schema: { params: Mid, body: Type.Object({ name: Type.String(), windowMs: Type.Integer({ minimum: 100, maximum: 10_000 }) }) },
  }, async (req) => deps.migrations.measureWrites(req.params.id, req.body.name, req.body.windowMs));
  app.post('/v1/migrate/:id/probe', {
    schema: { params: Mid, body: Type.Object({ bytes: Type.Integer({ minimum: 4096, maximum: 256 * 1024 * 1024 }) }) },
  }, async (req) => deps.migrations.layProbe(req.params.id, req.body.bytes));
  app.post('/v1/migrate/:id/measure-link', {
    schema: { params: Mid, body: Type.Object({ source: Type.String() }) },
  }, async (req) => deps.migrations.measureLink(req.params.id, req.body.source));
  app.post('/v1/migrate/:id/prepare', {
    schema: { params: Mid, body: Type.Optional(Type.Object({ expectBytes: Expect })) },
  }, async (req) => deps.migrations.prepare(req.params.id, req.body?.expectBytes));
  app.post('/v1/migrate/:id/freeze', {
    schema: {
      params: Mid,
      body: Type.Object({
        name: Type.String(), postCopy: Type.Optional(Type.Boolean()), streamTo: Type.Optional(Type.String()), preCopyRound: Type.Optional(Type.Integer({ minimum: 0 })),
        volumes: Type.Optional(VolumeNames),
      }),
    },
  }, async (req) => {
    const { name, ...o } = req.body;
    return deps.migrations.freeze(req.params.id, name, o);
  });
  app.post('/v1/migrate/:id/round', {
    schema: { params: Mid, body: Type.Object({ name: Type.String(), round: Type.Integer({ minimum: 0 }) }) },
  }, async (req) => deps.migrations.copyRound(req.params.id, req.body.name, req.body.round));
  app.post('/v1/migrate/:id/fetch-round', {
    schema: { params: Mid, body: Type.Object({ source: Type.String(), round: Type.Integer({ minimum: 0 }), bytesPerSec: Type.Optional(Type.Integer({ minimum: 0 })), expectBytes: Expect }) },
  }, async (req) => deps.migrations.fetchRound(req.params.id, req.body.source, req.body.round, req.body.bytesPerSec, req.body.expectBytes));
  // The migration's files for the target agent (see transfer.ts); `resume` after a broken stream.
  const ResumeSchema = Type.Object({
    done: Type.Array(Type.String()),
    partial: Type.Optional(Type.Object({ path: Type.String(), offset: Type.Integer({ minimum: 0 }) })),
  });
  app.post('/v1/migrate/:id/files', {
    schema: { params: Mid, body: Type.Object({ resume: ResumeSchema, bytesPerSec: Type.Optional(Type.Integer({ minimum: 0 })), subdir: Type.Optional(Type.String()), waitFinal: Type.Optional(Type.Boolean()) }) },
  }, async (req, reply) => {
    void reply.header('content-type', 'application/octet-stream');
    return reply.send(deps.migrations.files(req.params.id, { resume: req.body.resume, bytesPerSec: req.body.bytesPerSec }, req.body.subdir, req.body.waitFinal === true));
  });
  app.post('/v1/migrate/:id/prefetch', {
    schema: { params: Mid, body: Type.Object({ source: Type.String(), round: Type.Integer({ minimum: 0 }), bytesPerSec: Type.Optional(Type.Integer({ minimum: 0 })) }) },
  }, async (req) => {
    await deps.migrations.prefetchFinal(req.params.id, req.body.source, req.body.round, req.body.bytesPerSec);
    return { ok: true };
  });
  app.post('/v1/migrate/:id/resume', {
    schema: { params: Mid, body: Type.Object({ name: Type.String(), ports: Type.Array(PortSchema) }) },
  }, async (req) => {
    await deps.migrations.resume(req.params.id, req.body.name, req.body.ports);
    return { ok: true };
  });
  app.post('/v1/migrate/:id/restore', {
    schema: {
      params: Mid,
      body: Type.Object({
        source: Type.String(), assignment: AssignmentSchema, pageServer: Type.Optional(Type.String()), bytesPerSec: Type.Optional(Type.Integer({ minimum: 0 })),
        preCopyRound: Type.Optional(Type.Integer({ minimum: 0 })), expectBytes: Expect, volumes: Type.Optional(VolumeNames),
      }),
    },
  }, async (req) => {
    const { source, assignment, ...o } = req.body;
    return deps.migrations.restore(req.params.id, source, assignment as Assignment, o);
  });
  app.post('/v1/migrate/:id/continue', { schema: { params: Mid, body: Type.Object({ name: Type.String() }) } }, async (req) => {
    await deps.migrations.continue(req.params.id, req.body.name);
    return { ok: true };
  });
  app.post('/v1/migrate/:id/abort', { schema: { params: Mid, body: Type.Object({ name: Type.String() }) } }, async (req) => {
    await deps.migrations.abort(req.params.id, req.body.name);
    return { ok: true };
  });
  app.delete('/v1/migrate/:id', { schema: { params: Mid } }, async (req) => deps.migrations.cleanup(req.params.id));

  return app;
}
