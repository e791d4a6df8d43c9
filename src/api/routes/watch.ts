/** /v1/watch and /v1/kv: raw store access for agents and tools (read-only; writes go through the typed routes). */
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { ApiDeps } from '../server.ts';

/** Watch and list routes. */
export function watchRoutes(deps: ApiDeps): FastifyPluginAsync {
  return async (base) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();

    app.get('/kv', { schema: { summary: 'List keys under a prefix', querystring: Type.Object({ prefix: Type.String({ pattern: '^/ferry/' }) }) } }, async (req) => {
      const r = await deps.store.list(req.query.prefix);
      return { revision: r.revision, items: r.items.map((kv) => ({ key: kv.key, value: kv.value, modRevision: kv.modRevision })) };
    });

    app.get('/watch', {
      schema: {
        summary: 'Stream changes under a prefix as NDJSON (one line per change; an empty line every 15 s keeps it alive)',
        querystring: Type.Object({ prefix: Type.String({ pattern: '^/ferry/' }), afterRevision: Type.Optional(Type.Integer({ minimum: 0 })) }),
      },
    }, async (req, reply) => {
      const ac = new AbortController();
      req.raw.on('close', () => ac.abort());
      const iter = deps.store.watch(req.query.prefix, { afterRevision: req.query.afterRevision, signal: ac.signal })[Symbol.asyncIterator]();
      // Pull the first event before answering so a compacted revision becomes a proper error status.
      const first = iter.next();
      await Promise.race([first, new Promise((r) => setTimeout(r, 10))]);
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
      res.write('\n');
      const keepAlive = setInterval(() => res.write('\n'), 15_000);
      try {
        for (let r = await first; !r.done; r = await iter.next()) {
          const ev = r.value;
          res.write(`${JSON.stringify({ type: ev.type, revision: ev.revision, key: ev.kv.key, value: ev.type === 'put' ? ev.kv.value : undefined })}\n`);
        }
      } catch (e) {
        res.write(`${JSON.stringify({ error: { code: (e as { code?: string }).code ?? 'FERRY_ERR_INTERNAL', message: (e as Error).message } })}\n`);
      } finally {
        clearInterval(keepAlive);
        ac.abort();
        res.end();
      }
    });
  };
}
