/**
 * What entry points (the lb processes) tell the manager: that they run (a lease-bound key, which
 * makes a migration wait for their hold, carrying the HTTP address they serve on), that a hold is in
 * force, and that a retiring replica has no session left (it can go before its drain deadline).
 * Also the one way the manager reaches a service as clients do: a path opened through a live entry
 * point with the service's Host header (the dashboard charts the sample app's stream through it).
 */
import { request, type ClientRequest, type IncomingMessage } from 'node:http';
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { ApiDeps } from '../server.ts';
import { mutate } from '../../store/index.ts';
import { defineErrors, isFerryError } from '../../errors/index.ts';
import { keys, checkName, type Retirement, type Service } from '../../model/index.ts';
import type { Hold } from '../../controllers/index.ts';
import { NodeLeases } from '../leases.ts';
import { apiErrors } from '../errors.ts';
import { NameParams } from './schemas.ts';

/** Errors of the path opened through an entry point. */
export const entryPointErrors = defineErrors({
  NO_ENTRY_POINT: { status: 503, message: 'no entry point that announces its HTTP address is running: start one (`ferry up` does, or `ferry lb --manager <url>`), then try again' },
  SERVICE_NOT_HTTP: { status: 409, message: 'service "{name}" has no HTTP host name, so no entry point routes HTTP to it; give it one (`ferry service update {name} --http-host <host>`)' },
  ENTRY_POINT_UNREACHABLE: { status: 502, message: 'no entry point answered for service "{name}": {reason}' },
});

/** The lease-bound record an entry point keeps at /ferry/lb/alive/<name>. */
interface EntryPointRecord {
  node: string;
  since: string;
  /** Where the entry point serves HTTP, as the manager reaches it (absent from entry points that do not say). */
  http?: string;
}

const HeartbeatQuery = Type.Object({ http: Type.Optional(Type.String({ pattern: '^http://[^/]+$' })) }, { additionalProperties: false });
const StreamQuery = Type.Object({ path: Type.String({ pattern: '^/', maxLength: 2048, default: '/' }) }, { additionalProperties: false });

const AckBody = Type.Object({ entryPoint: Type.String({ minLength: 1 }), uid: Type.String({ minLength: 1 }) }, { additionalProperties: false });
const UidBody = Type.Object({ uid: Type.String({ minLength: 1 }) }, { additionalProperties: false });

/** Changes `key` with `fn` unless it is gone or belongs to another object; answers whether it applied. */
async function touch<T>(store: ApiDeps['store'], key: string, fn: (v: T) => T | undefined): Promise<{ applied: boolean }> {
  try {
    await mutate<T>(store, key, fn);
    return { applied: true };
  } catch (e) {
    if (isFerryError(e, 'STORE_NOT_FOUND')) return { applied: false };
    throw e;
  }
}

/** Sends GET `path` with Host `host` to the entry point at `base`; resolves once the answer's head is in. */
function openThrough(base: string, path: string, host: string): Promise<{ upstream: ClientRequest; res: IncomingMessage }> {
  return new Promise((resolve, reject) => {
    const upstream = request(new URL(path, base), { method: 'GET', headers: { host, accept: '*/*' }, timeout: 5000 }, (res) => {
      // Once it answers, a quiet stream is not an error: the client decides when to give up.
      upstream.setTimeout(0);
      resolve({ upstream, res });
    });
    upstream.on('timeout', () => upstream.destroy(new Error('no answer within 5 s')));
    upstream.on('error', reject);
    upstream.end();
  });
}

/** Entry-point routes. */
export function entryPointRoutes(deps: ApiDeps): FastifyPluginAsync {
  return async (base) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    const { store } = deps;
    const leases = new NodeLeases(store, deps.nodeLeaseTtl, keys.entryPoint);

    app.post('/entrypoints/:name/heartbeat', {
      schema: { summary: 'An entry point says it runs (renews its lease) and, with `http`, where it serves HTTP', params: NameParams, querystring: HeartbeatQuery },
    }, async (req) => {
      const name = checkName(req.params.name);
      await leases.beat(name);
      const http = req.query.http;
      // The lease writes the record only when it is granted; the address rides on it (an update keeps the lease).
      if (http !== undefined) await touch<EntryPointRecord>(store, keys.entryPoint(name), (r) => (r.http === http ? undefined : { ...r, http }));
      return { ttlSeconds: deps.nodeLeaseTtl };
    });

    app.get('/services/:name/stream', {
      schema: { summary: 'Open a path of a service through a live entry point (with its Host header) and stream the answer as it comes (for Server-Sent Events)', params: NameParams, querystring: StreamQuery },
    }, async (req, reply) => {
      const name = req.params.name;
      const svc = (await store.get<Service>(keys.service(name)))?.value;
      if (!svc) throw apiErrors.SERVICE_NOT_FOUND({ name });
      const host = svc.spec.http?.hosts[0];
      if (!host) throw entryPointErrors.SERVICE_NOT_HTTP({ name });
      const eps = (await store.list<EntryPointRecord>(keys.entryPoints)).items.map((kv) => kv.value.http).filter((u): u is string => u !== undefined);
      if (eps.length === 0) throw entryPointErrors.NO_ENTRY_POINT();
      const reasons: string[] = [];
      for (const ep of eps) {
        const opened = await openThrough(ep, req.query.path, host).catch((e: Error) => { reasons.push(`${ep}: ${e.message}`); return undefined; });
        if (!opened) continue;
        const { upstream, res } = opened;
        reply.hijack();
        const out = reply.raw;
        out.writeHead(res.statusCode ?? 502, {
          'content-type': res.headers['content-type'] ?? 'application/octet-stream', 'cache-control': 'no-store', 'x-ferry-entry-point': ep,
        });
        out.flushHeaders();
        // The client leaving ends the upstream request (and the entry point's connection to the replica).
        out.on('close', () => upstream.destroy());
        // An upstream that breaks (the replica's connection reset) ends the answer; the client reconnects.
        res.on('error', () => out.end());
        res.on('aborted', () => out.end());
        res.pipe(out);
        await new Promise<void>((done) => out.on('close', done));
        return;
      }
      throw entryPointErrors.ENTRY_POINT_UNREACHABLE({ name, reason: reasons.join('; ') });
    });

    app.delete('/entrypoints/:name', { schema: { summary: 'An entry point stops', params: NameParams } }, async (req, reply) => {
      await leases.end(req.params.name);
      return reply.status(204).send();
    });

    app.post('/holds/:name/ack', { schema: { summary: 'An entry point holds requests for a frozen replica', params: NameParams, body: AckBody } }, async (req) =>
      touch<Hold>(store, keys.hold(req.params.name), (h) => {
        if (h.uid !== req.body.uid || h.acks.includes(req.body.entryPoint)) return undefined;
        return { ...h, acks: [...h.acks, req.body.entryPoint] };
      }));

    app.post('/retirements/:name/drained', { schema: { summary: 'A retiring replica has no session left at the entry point', params: NameParams, body: UidBody } }, async (req) =>
      touch<Retirement>(store, keys.retirement(req.params.name), (r) => (r.uid !== req.body.uid || r.drained ? undefined : { ...r, drained: true })));
  };
}
