/** /v1/join-tokens: the tokens new hosts join the cluster with (admin only; the secrets are shown once, at creation). */
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { ApiDeps } from '../server.ts';
import { JOIN_TOKEN_MAX_TTL_SECONDS, JOIN_TOKEN_MAX_USES } from '../../model/index.ts';
import { createJoinToken, listJoinTokens, removeJoinToken } from '../join.ts';

const CreateBody = Type.Object({
  /** Default one hour. */
  ttlSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: JOIN_TOKEN_MAX_TTL_SECONDS })),
  /** Default one. */
  uses: Type.Optional(Type.Integer({ minimum: 1, maximum: JOIN_TOKEN_MAX_USES })),
  /** Labels every node that joins with the token gets. */
  labels: Type.Optional(Type.Record(Type.String({ minLength: 1, maxLength: 63 }), Type.String({ maxLength: 253 }))),
}, { additionalProperties: false });

/** Join token routes. */
export function joinTokenRoutes(deps: ApiDeps): FastifyPluginAsync {
  return async (base) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    app.post('/join-tokens', { schema: { summary: 'Make a join token (its text is in this answer only)', body: CreateBody } }, async (req, reply) => {
      const created = await createJoinToken(deps.store, req.body);
      return reply.status(201).send(created);
    });
    app.get('/join-tokens', { schema: { summary: 'List join tokens (never their secrets)' } }, async () => listJoinTokens(deps.store));
    app.delete('/join-tokens/:id', { schema: { summary: 'Delete a join token (nodes that joined with it stay)', params: Type.Object({ id: Type.String({ minLength: 1 }) }) } },
      async (req, reply) => {
        await removeJoinToken(deps.store, req.params.id);
        return reply.status(204).send();
      });
  };
}
