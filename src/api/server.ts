/** Builds the manager's HTTP API: fastify with schemas, bearer auth, OpenAPI, one error shape. */
import Fastify, { type FastifyInstance, type FastifyError } from 'fastify';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Store } from '../store/index.ts';
import { FerryError } from '../errors/index.ts';
import { apiErrors } from './errors.ts';
import { installAuth } from './auth.ts';
import { containerRoutes } from './routes/containers.ts';
import { nodeRoutes } from './routes/nodes.ts';
import { imageRoutes } from './routes/images.ts';
import { agentRoutes } from './routes/agent.ts';
import { watchRoutes } from './routes/watch.ts';
import { migrationRoutes } from './routes/migrations.ts';
import { networkRoutes } from './routes/network.ts';
import { networksRoutes } from './routes/networks.ts';
import { joinTokenRoutes } from './routes/join-tokens.ts';
import { serviceRoutes } from './routes/services.ts';
import { entryPointRoutes } from './routes/entrypoints.ts';
import { dashboardRoutes } from './routes/dashboard.ts';
import type { NodeLeases } from './leases.ts';

/** What the API needs from the rest of the manager. */
export interface ApiDeps {
  readonly store: Store;
  /**
   * The cluster token: every request carries it, except /healthz, /openapi.json, the join exchange,
   * and the agent calls of nodes that joined with a token (those carry their node's credential).
   */
  readonly token: string;
  /** Token the manager presents to agents. */
  readonly agentToken: string;
  readonly version: string;
  readonly leases: NodeLeases;
  /** Directory for spooling uploads (image imports). */
  readonly spoolDir: string;
  /** Seconds a node's lease lives without heartbeats. */
  readonly nodeLeaseTtl: number;
  /** Seconds a node stays Suspect before Down (agents learn it at register to size their fence). */
  readonly fenceGraceSeconds?: number;
  readonly logger?: boolean | object;
}

/** The API as a fastify instance with TypeBox typing. */
export type Api = FastifyInstance & { withTypeProvider: FastifyInstance['withTypeProvider'] };

/** Builds (but does not listen) the manager API. */
export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const app = Fastify({
    logger: deps.logger ?? false, bodyLimit: 1024 * 1024, forceCloseConnections: true,
    // Unknown fields are an error, not silently dropped: a typo must not be ignored.
    ajv: { customOptions: { removeAdditional: false } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  await app.register(swagger, {
    openapi: {
      info: { title: 'Ferry manager API', version: deps.version, description: 'Containers, nodes and images of a Ferry cluster.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });

  app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));

  installAuth(app, deps);

  app.setErrorHandler((err: FastifyError | FerryError, req, reply) => {
    let fe: FerryError;
    if (err instanceof FerryError) fe = err;
    else if ((err as FastifyError).validation) fe = apiErrors.BAD_REQUEST({ reason: `${(err as FastifyError).validationContext ?? 'body'} ${err.message.replace(/^(body|querystring|params)\s*/, '')}` });
    else if ((err as FastifyError).code === 'FST_ERR_CTP_BODY_TOO_LARGE') fe = apiErrors.PAYLOAD_TOO_LARGE({ reason: err.message });
    else if ((err as FastifyError).statusCode && (err as FastifyError).statusCode! < 500) {
      fe = apiErrors.BAD_REQUEST({ reason: err.message });
    } else {
      req.log.error({ err }, 'internal error');
      fe = new FerryError('FERRY_ERR_INTERNAL', 500, `internal error: ${err.message}`);
    }
    void reply.status(fe.status).send(fe.toJSON());
  });

  app.setNotFoundHandler((req, reply) => {
    const fe = apiErrors.ROUTE_NOT_FOUND({ method: req.method, url: req.url.split('?')[0] });
    void reply.status(404).send(fe.toJSON());
  });

  app.get('/healthz', { schema: { hide: true } }, async () => ({ ok: true, version: deps.version }));
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  await app.register(containerRoutes(deps), { prefix: '/v1' });
  await app.register(nodeRoutes(deps), { prefix: '/v1' });
  await app.register(imageRoutes(deps), { prefix: '/v1' });
  await app.register(agentRoutes(deps), { prefix: '/v1' });
  await app.register(watchRoutes(deps), { prefix: '/v1' });
  await app.register(migrationRoutes(deps), { prefix: '/v1' });
  await app.register(networkRoutes(deps), { prefix: '/v1' });
  await app.register(networksRoutes(deps), { prefix: '/v1' });
  await app.register(joinTokenRoutes(deps), { prefix: '/v1' });
  await app.register(serviceRoutes(deps), { prefix: '/v1' });
  await app.register(entryPointRoutes(deps), { prefix: '/v1' });
  await app.register(dashboardRoutes());
  return app;
}
