/** /v1/services: create, list, inspect, update (scale, roll), remove. */
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { ApiDeps } from '../server.ts';
import { ServiceSpecSchema } from '../../model/index.ts';
import { createService, deleteService, serviceViews, updateService } from '../services.ts';
import { NameParams } from './schemas.ts';

/** Every spec field, optional (the defaults fill the rest). */
const SpecFields = Type.Partial(ServiceSpecSchema);

/** Body of POST /v1/services. */
const CreateServiceBody = Type.Object({
  ...SpecFields.properties,
  name: Type.String({ minLength: 1, maxLength: 57 }),
  image: Type.String({ minLength: 1 }),
}, { additionalProperties: false });

/** Body of PATCH /v1/services/:name. */
const UpdateServiceBody = Type.Object({ ...SpecFields.properties }, { additionalProperties: false });

/** Service routes. */
export function serviceRoutes(deps: ApiDeps): FastifyPluginAsync {
  return async (base) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    const { store } = deps;

    app.post('/services', { schema: { summary: 'Create a service (its replicas are created by the services controller)', body: CreateServiceBody } }, async (req, reply) => {
      const s = await createService(store, req.body);
      return reply.status(201).send((await serviceViews(store, s.metadata.name))[0]);
    });

    app.get('/services', { schema: { summary: 'List services with their replicas' } }, async () => serviceViews(store));

    app.get('/services/:name', { schema: { summary: 'Inspect a service: each replica, its node and why it was placed there', params: NameParams } }, async (req) =>
      (await serviceViews(store, req.params.name))[0]);

    app.patch('/services/:name', { schema: { summary: 'Change a service: scale, new image (rolling), routing', params: NameParams, body: UpdateServiceBody } }, async (req) => {
      await updateService(store, req.params.name, req.body);
      return (await serviceViews(store, req.params.name))[0];
    });

    app.delete('/services/:name', { schema: { summary: 'Remove a service: its replicas are drained, then removed', params: NameParams } }, async (req, reply) => {
      await deleteService(store, req.params.name);
      return reply.status(202).send((await serviceViews(store, req.params.name))[0]);
    });
  };
}
