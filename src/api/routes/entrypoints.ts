/**
 * What entry points (the lb processes) tell the manager: that they run (a lease-bound key, which
 * makes a migration wait for their hold), that a hold is in force, and that a retiring replica has
 * no session left (it can go before its drain deadline).
 */
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { ApiDeps } from '../server.ts';
import { mutate } from '../../store/index.ts';
import { isFerryError } from '../../errors/index.ts';
import { keys, checkName, type Retirement } from '../../model/index.ts';
import type { Hold } from '../../controllers/index.ts';
import { NodeLeases } from '../leases.ts';
import { NameParams } from './schemas.ts';

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

/** Entry-point routes. */
export function entryPointRoutes(deps: ApiDeps): FastifyPluginAsync {
  return async (base) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    const { store } = deps;
    const leases = new NodeLeases(store, deps.nodeLeaseTtl, keys.entryPoint);

    app.post('/entrypoints/:name/heartbeat', { schema: { summary: 'An entry point says it runs (renews its lease)', params: NameParams } }, async (req) => {
      await leases.beat(checkName(req.params.name));
      return { ttlSeconds: deps.nodeLeaseTtl };
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
