/** /v1/agent: what agents call — register, heartbeat, report container status and images. */
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { randomUUID } from 'node:crypto';
import type { ApiDeps } from '../server.ts';
import { put, remove } from '../../store/index.ts';
import type { ContainerStatus, Node, NodeImages } from '../../model/index.ts';
import { keys, checkName, ContainerStatusSchema, ImageRecordSchema, NodeFactsSchema } from '../../model/index.ts';
import { NameParams } from './schemas.ts';

const RegisterBody = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 63 }),
  address: Type.String({ minLength: 1 }),
  labels: Type.Record(Type.String(), Type.String()),
  capacity: Type.Object({ cpus: Type.Number(), memoryBytes: Type.Integer() }),
  facts: NodeFactsSchema,
  agentVersion: Type.String(),
});

/** Agent-facing routes. */
export function agentRoutes(deps: ApiDeps): FastifyPluginAsync {
  return async (base) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    const { store } = deps;

    app.post('/agent/register', { schema: { summary: 'An agent announces its node', body: RegisterBody } }, async (req) => {
      const b = req.body;
      checkName(b.name);
      const now = new Date().toISOString();
      const existing = await store.get<Node>(keys.node(b.name));
      const node: Node = {
        apiVersion: 'ferry/v1', kind: 'Node',
        metadata: existing?.value.metadata ?? { name: b.name, uid: randomUUID(), createdAt: now, labels: {} },
        spec: existing?.value.spec ?? { unschedulable: false },
        status: { address: b.address, capacity: b.capacity, facts: b.facts, agentVersion: b.agentVersion, startedAt: now, heartbeatAt: now },
      };
      node.metadata.labels = { ...node.metadata.labels, ...b.labels };
      await put(store, keys.node(b.name), node);
      await deps.leases.beat(b.name);
      return { node, leaseTtl: deps.nodeLeaseTtl };
    });

    app.post('/agent/:name/heartbeat', { schema: { summary: 'An agent is alive', params: NameParams } }, async (req) => {
      await deps.leases.beat(req.params.name);
      return { ok: true };
    });

    app.put('/agent/status/:name', { schema: { summary: 'An agent reports a container status', params: NameParams, body: ContainerStatusSchema } }, async (req, reply) => {
      const st = req.body as ContainerStatus;
      const key = keys.status(req.params.name);
      const cur = await store.get<ContainerStatus>(key);
      // A report about an older placement (lower epoch) of the same container never overwrites a newer one.
      if (cur && cur.value.uid === st.uid && cur.value.epoch > st.epoch) return reply.status(204).send();
      await put(store, key, st);
      return reply.status(204).send();
    });

    app.delete('/agent/status/:name', {
      schema: { summary: 'An agent has removed a container', params: NameParams, querystring: Type.Object({ uid: Type.String(), node: Type.String() }) },
    }, async (req, reply) => {
      const key = keys.status(req.params.name);
      const cur = await store.get<ContainerStatus>(key);
      // Only the node that reported the status clears it: after a migration the old node's cleanup
      // must not erase what the new node reports.
      if (cur && cur.value.uid === req.query.uid && (cur.value.node === req.query.node || cur.value.node === '')) await remove(store, key);
      return reply.status(204).send();
    });

    app.put('/agent/:name/images', { schema: { summary: 'An agent reports its images', params: NameParams, body: Type.Object({ images: Type.Array(ImageRecordSchema) }) } }, async (req, reply) => {
      const value: NodeImages = { node: req.params.name, images: req.body.images, updatedAt: new Date().toISOString() };
      await put(store, keys.nodeImages(req.params.name), value);
      return reply.status(204).send();
    });

  };
}
