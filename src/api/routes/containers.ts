/** /v1/containers: create, inspect, change, stop/start, remove, logs, exec, stats. */
import { Readable } from 'node:stream';
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { ApiDeps } from '../server.ts';
import { apiErrors } from '../errors.ts';
import {
  createContainer, getContainer, listContainers, changeSpec, requestDelete, waitForContainer, isSettled,
} from '../containers.ts';
import type { ContainerView } from '../../model/index.ts';
import { agentFor } from '../agents.ts';
import { CreateBody, PatchBody, NameParams, WaitQuery, ExecBody } from './schemas.ts';
import { requireNetwork } from './networks.ts';
import { DEFAULT_NETWORK } from '../../model/index.ts';

/** CreateBody with the network to put the container on (absent: `default`, the cluster network). */
const CreateWithNetwork = Type.Object({ ...CreateBody.properties, network: Type.Optional(Type.String({ minLength: 1, maxLength: 63 })) }, { additionalProperties: false });
/** PatchBody that also names `network`, only to refuse it clearly: a container's network is fixed at create. */
const PatchWithNetwork = Type.Object({ ...PatchBody.properties, network: Type.Optional(Type.String()) }, { additionalProperties: false });

const DEFAULT_WAIT_MS = 120_000;

/** Container routes. */
export function containerRoutes(deps: ApiDeps): FastifyPluginAsync {
  return async (base) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    const { store } = deps;

    const settle = async (name: string, wait: boolean | undefined, timeoutMs: number | undefined): Promise<ContainerView> => {
      if (!wait) return getContainer(store, name);
      const v = await waitForContainer(store, name, (cv) => cv === undefined || isSettled(cv), timeoutMs ?? DEFAULT_WAIT_MS);
      if (!v) throw apiErrors.CONTAINER_NOT_FOUND({ name });
      return v;
    };

    app.get('/containers', { schema: { summary: 'List containers with their status' } }, async () => listContainers(store));

    app.post('/containers', { schema: { summary: 'Create and run a container', body: CreateWithNetwork, querystring: WaitQuery } }, async (req, reply) => {
      const { network, ...rest } = req.body;
      if (network !== undefined) await requireNetwork(store, network);
      // `default` is stored as no network: one spelling of the cluster network.
      const c = await createContainer(store, network === undefined || network === DEFAULT_NETWORK ? rest : { ...rest, network });
      const view = await settle(c.metadata.name, req.query.wait, req.query.timeoutMs);
      return reply.status(201).send(view);
    });

    app.get('/containers/:name', { schema: { summary: 'Inspect a container', params: NameParams } }, async (req) => getContainer(store, req.params.name));

    app.patch('/containers/:name', { schema: { summary: 'Change limits or restart policy in place', params: NameParams, body: PatchWithNetwork, querystring: WaitQuery } }, async (req) => {
      const { resources, restart, network } = req.body;
      if (network !== undefined) throw apiErrors.CONTAINER_FIELD_FIXED({ field: 'network', name: req.params.name });
      if (!resources && !restart) throw apiErrors.BAD_REQUEST({ reason: 'nothing to change: give resources and/or restart' });
      await changeSpec(store, req.params.name, (spec) => {
        if (resources) spec.resources = { ...spec.resources, ...resources };
        if (restart) spec.restart = restart;
      });
      return settle(req.params.name, req.query.wait, req.query.timeoutMs);
    });

    app.post('/containers/:name/stop', { schema: { summary: 'Stop a container (it stays, with its filesystem)', params: NameParams, querystring: WaitQuery } }, async (req) => {
      await changeSpec(store, req.params.name, (spec) => { spec.state = 'stopped'; });
      return settle(req.params.name, req.query.wait, req.query.timeoutMs);
    });

    app.post('/containers/:name/start', { schema: { summary: 'Start a stopped container', params: NameParams, querystring: WaitQuery } }, async (req) => {
      await changeSpec(store, req.params.name, (spec) => { spec.state = 'running'; });
      return settle(req.params.name, req.query.wait, req.query.timeoutMs);
    });

    app.delete('/containers/:name', {
      schema: { summary: 'Remove a container', params: NameParams, querystring: Type.Object({ ...WaitQuery.properties, force: Type.Optional(Type.Boolean()) }) },
    }, async (req, reply) => {
      // A running container is stopped first (SIGTERM, then SIGKILL after the grace); `force` skips the grace.
      const { container } = await getContainer(store, req.params.name);
      await requestDelete(store, req.params.name, req.query.force === true);
      if (req.query.wait) {
        await waitForContainer(store, req.params.name, (cv) => cv === undefined || cv.container.metadata.uid !== container.metadata.uid, req.query.timeoutMs ?? DEFAULT_WAIT_MS);
      }
      return reply.status(204).send();
    });

    app.get('/containers/:name/logs', {
      schema: { summary: 'Stream the container output (NDJSON)', params: NameParams, querystring: Type.Object({ follow: Type.Optional(Type.Boolean()), tail: Type.Optional(Type.Integer({ minimum: 0 })) }) },
    }, async (req, reply) => {
      const { agent, runtimeId } = await agentFor(deps, req.params.name);
      const ac = new AbortController();
      req.raw.on('close', () => ac.abort());
      const res = await agent.logs(runtimeId, { follow: req.query.follow, tail: req.query.tail, signal: ac.signal });
      void reply.header('content-type', 'application/x-ndjson');
      return reply.send(Readable.fromWeb(res.body as never));
    });

    app.post('/containers/:name/exec', { schema: { summary: 'Run a command in the container (NDJSON frames)', params: NameParams, body: ExecBody } }, async (req, reply) => {
      const { agent, runtimeId, view } = await agentFor(deps, req.params.name);
      if (view.status?.phase !== 'running') throw apiErrors.CONTAINER_NOT_RUNNING({ name: req.params.name, phase: view.status?.phase ?? 'pending' });
      const ac = new AbortController();
      req.raw.on('close', () => { if (!reply.raw.writableFinished) ac.abort(); });
      const res = await agent.exec(runtimeId, req.body, ac.signal);
      void reply.header('content-type', 'application/x-ndjson');
      return reply.send(Readable.fromWeb(res.body as never));
    });

    app.get('/containers/:name/stats', { schema: { summary: 'cgroup CPU and memory figures', params: NameParams } }, async (req) => {
      const { agent, runtimeId } = await agentFor(deps, req.params.name);
      return agent.stats(runtimeId);
    });
  };
}
