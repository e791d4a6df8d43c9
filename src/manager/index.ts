/**
 * The manager process: opens the store, serves the API, runs the controllers. Everything it knows
 * lives in the store, so a restarted manager simply carries on.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { openStore, type Store } from '../store/index.ts';
import { buildApi, NodeLeases, newToken } from '../api/index.ts';
import { ensureClusterNetwork, startContainersController, startMigrationsController, startServicesController, type Loop } from '../controllers/index.ts';
import { clusterNetworkOf } from '../model/index.ts';

/** How to run a manager. */
export interface ManagerOptions {
  /** Directory for the SQLite file, the token and upload spools. */
  readonly dataDir: string;
  /** Store URL; default `sqlite:<dataDir>/state.db`. */
  readonly storeUrl?: string;
  readonly host: string;
  readonly port: number;
  /** API token; default: read or create `<dataDir>/token`. */
  readonly token?: string;
  /** Seconds without heartbeat before a node is NotReady. */
  readonly nodeLeaseTtl: number;
  /**
   * The cluster-wide container network: one flat subnet carried between hosts by VXLAN (network id
   * `vni`), addresses leased from the store. Without it every node keeps its own local subnet.
   */
  readonly clusterNetwork?: { readonly subnet: string; readonly vni: number };
  readonly version: string;
  readonly log: (msg: string) => void;
}

/** A running manager. */
export interface RunningManager {
  readonly url: string;
  readonly token: string;
  readonly store: Store;
  readonly api: FastifyInstance;
  readonly controllers: Loop;
  stop(): Promise<void>;
}

/** Reads the cluster token from `file`, creating it (mode 0600) on first start. */
export async function loadOrCreateToken(file: string): Promise<string> {
  try {
    const t = (await readFile(file, 'utf8')).trim();
    if (t) return t;
  } catch { /* first start */ }
  const t = newToken();
  await writeFile(file, `${t}\n`, { mode: 0o600 });
  return t;
}

/** Starts a manager. */
export async function startManager(o: ManagerOptions): Promise<RunningManager> {
  await mkdir(o.dataDir, { recursive: true, mode: 0o700 });
  const token = o.token ?? (await loadOrCreateToken(join(o.dataDir, 'token')));
  // What the manager (and agents among themselves) present to agents' APIs: not the admin token.
  const agentToken = await loadOrCreateToken(join(o.dataDir, 'agent-token'));
  // A bad subnet or vni fails before the store is even opened.
  const wantNetwork = o.clusterNetwork ? clusterNetworkOf(o.clusterNetwork.subnet, o.clusterNetwork.vni) : undefined;
  const store = await openStore(o.storeUrl ?? `sqlite:${join(o.dataDir, 'state.db')}`);
  if (wantNetwork) {
    // Once stored, the cluster network stays (started without it, the manager carries on with the stored one).
    await ensureClusterNetwork(store, wantNetwork).catch(async (e: unknown) => { await store.close(); throw e; });
  }
  const leases = new NodeLeases(store, o.nodeLeaseTtl);
  const api = await buildApi({
    store, token, agentToken, version: o.version, leases, spoolDir: join(o.dataDir, 'spool'), nodeLeaseTtl: o.nodeLeaseTtl,
  });
  await api.listen({ host: o.host, port: o.port });
  const addr = api.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : o.port;
  const url = `http://${o.host === '0.0.0.0' ? '127.0.0.1' : o.host}:${port}`;
  const containers = startContainersController(store, (name, e) => o.log(`controller ${name}: ${(e as Error).message}`));
  const migrations = startMigrationsController({ store, agentToken, log: o.log });
  const services = startServicesController(store, (name, e) => o.log(`services controller ${name}: ${(e as Error).message}`));
  const controllers: Loop = {
    stop: async () => { await Promise.all([containers.stop(), migrations.stop(), services.stop()]); },
    idle: async () => { await services.idle(); await containers.idle(); await migrations.idle(); },
  };
  return {
    url, token, store, api, controllers,
    async stop() {
      await controllers.stop();
      await api.close();
      await store.close();
    },
  };
}
