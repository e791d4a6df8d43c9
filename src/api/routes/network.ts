/** /v1/network: the cluster-wide container network, for the CLI and agents. */
import type { FastifyPluginAsync } from 'fastify';
import type { ApiDeps } from '../server.ts';
import type { ClusterNetwork } from '../../model/index.ts';
import { clusterNetwork } from '../../controllers/index.ts';
import { apiErrors } from '../errors.ts';

/** Network routes. */
export function networkRoutes(deps: ApiDeps): FastifyPluginAsync {
  return async (app) => {
    app.get('/network', { schema: { summary: 'The cluster-wide container network (404 when nodes keep their own local subnets)' } }, async (): Promise<ClusterNetwork> => {
      const net = await clusterNetwork(deps.store);
      if (!net) throw apiErrors.NETWORK_NOT_CONFIGURED();
      return net;
    });
  };
}
