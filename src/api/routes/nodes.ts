/** /v1/nodes: the hosts of the cluster with their readiness. */
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { ApiDeps } from '../server.ts';
import { listNodes } from '../nodes.ts';
import { apiErrors } from '../errors.ts';
import { NameParams } from './schemas.ts';

/** Node routes. */
export function nodeRoutes(deps: ApiDeps): FastifyPluginAsync {
  return async (base) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    app.get('/nodes', { schema: { summary: 'List nodes' } }, async () => listNodes(deps.store));
    app.get('/nodes/:name', { schema: { summary: 'Inspect a node', params: NameParams } }, async (req) => {
      const n = (await listNodes(deps.store)).find((v) => v.node.metadata.name === req.params.name);
      if (!n) throw apiErrors.NODE_NOT_FOUND({ name: req.params.name });
      return n;
    });
  };
}
