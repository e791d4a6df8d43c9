/** /v1/nodes: the hosts of the cluster with their readiness; cordon and uncordon. */
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { ApiDeps } from '../server.ts';
import { listNodes } from '../nodes.ts';
import { apiErrors } from '../errors.ts';
import { mutate, remove } from '../../store/index.ts';
import { releaseNodeAddresses } from '../../controllers/index.ts';
import { isFerryError } from '../../errors/index.ts';
import { Type } from 'typebox';
import type { ClusterEvent, Container, Node } from '../../model/index.ts';
import { EVENTS_KEPT, keys } from '../../model/index.ts';
import type { NodeView } from '../../client/index.ts';
import { NameParams } from './schemas.ts';

/** Node routes. */
export function nodeRoutes(deps: ApiDeps): FastifyPluginAsync {
  return async (base) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    const view = async (name: string): Promise<NodeView> => {
      const n = (await listNodes(deps.store)).find((v) => v.node.metadata.name === name);
      if (!n) throw apiErrors.NODE_NOT_FOUND({ name });
      return n;
    };
    // Only spec.unschedulable changes; the agent's registration keeps the spec it finds.
    const setUnschedulable = async (name: string, unschedulable: boolean): Promise<NodeView> => {
      try {
        await mutate<Node>(deps.store, keys.node(name), (n) => {
          if (n.spec.unschedulable === unschedulable) return undefined;
          n.spec.unschedulable = unschedulable;
          return n;
        });
      } catch (e) {
        if (isFerryError(e, 'STORE_NOT_FOUND')) throw apiErrors.NODE_NOT_FOUND({ name });
        throw e;
      }
      return view(name);
    };
    app.get('/nodes', { schema: { summary: 'List nodes' } }, async () => listNodes(deps.store));
    app.get('/events', {
      schema: { summary: 'Cluster events, oldest first (node health, failovers)', querystring: Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: EVENTS_KEPT })) }) },
    }, async (req) => {
      const { items } = await deps.store.list<ClusterEvent>(keys.events);
      return items.slice(-(req.query.limit ?? 100)).map((kv) => kv.value);
    });
    app.get('/nodes/:name', { schema: { summary: 'Inspect a node', params: NameParams } }, async (req) => view(req.params.name));
    app.post('/nodes/:name/cordon', { schema: { summary: 'Mark a node unschedulable: nothing new is placed or migrated there; what runs there stays', params: NameParams } },
      async (req) => setUnschedulable(req.params.name, true));
    app.delete('/nodes/:name', { schema: { summary: 'Forget a node that is gone (NotReady, nothing placed on it): its record, addresses and credential', params: NameParams } },
      async (req, reply) => {
        const name = req.params.name;
        if (!(await deps.store.get(keys.node(name)))) throw apiErrors.NODE_NOT_FOUND({ name });
        if (await deps.store.get(keys.nodeAlive(name))) throw apiErrors.NODE_STILL_READY({ name });
        const placed = (await deps.store.list<Container>(keys.containers)).items.filter((kv) => kv.value.placement?.node === name).map((kv) => kv.value.metadata.name);
        if (placed.length > 0) throw apiErrors.NODE_STILL_USED({ name, count: placed.length, containers: placed.join(', ') });
        await releaseNodeAddresses(deps.store, name);
        for (const key of [keys.nodeImages(name), keys.nodeCredential(name), keys.nodeHealth(name), keys.node(name)]) await remove(deps.store, key);
        return reply.status(204).send();
      });
    app.post('/nodes/:name/uncordon', { schema: { summary: 'Make a node schedulable again', params: NameParams } },
      async (req) => setUnschedulable(req.params.name, false));
  };
}
