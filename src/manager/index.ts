/**
 * The manager process: opens the store, serves the API, runs the controllers. Everything it knows
 * lives in the store, so a restarted manager simply carries on.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { openStore, type Store } from '../store/index.ts';
import { buildApi, NodeLeases, newToken } from '../api/index.ts';
import { ensureClusterNetwork, startContainersController, startHealthController, startMigrationsController, startServicesController, type Loop } from '../controllers/index.ts';
import { clusterNetworkOf, DEFAULT_DETECTION } from '../model/index.ts';
import { isFerryError } from '../errors/index.ts';
import { LEADER_HEADER, LeaderElection, notLeader } from './leader.ts';

export { LEADER_HEADER, LEADER_KEY, LeaderElection, leaderErrors, type LeaderInfo } from './leader.ts';

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
  /** Seconds without heartbeat before a node is Suspect (its lease lapses). */
  readonly nodeLeaseTtl: number;
  /** Seconds a node stays Suspect before it is Down and its containers fail over (default 3). */
  readonly fenceGrace?: number;
  /**
   * The cluster-wide container network: one flat subnet carried between hosts by VXLAN (network id
   * `vni`), addresses leased from the store. Without it every node keeps its own local subnet.
   */
  readonly clusterNetwork?: { readonly subnet: string; readonly vni: number };
  readonly version: string;
  readonly log: (msg: string) => void;
  /**
   * Name of this manager among several sharing one store (etcd): with it the manager runs for leader
   * and runs its controllers only while leading; standbys answer API calls with NOT_LEADER.
   */
  readonly name?: string;
  /** The API URL other managers hand to clients while this one leads; default the listen URL. */
  readonly advertiseUrl?: string;
  /** Leader lease TTL in seconds: how long a dead leader keeps the role (default 5). */
  readonly leaderTtl?: number;
}

/** The route a standby still answers: who leads. */
export const LEADER_STATUS_ROUTE = '/v1/manager/leader';

/** A running manager. */
export interface RunningManager {
  readonly url: string;
  readonly token: string;
  readonly store: Store;
  readonly api: FastifyInstance;
  readonly controllers: Loop;
  /** The election, when started with a `name`. */
  readonly election?: LeaderElection;
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

/** The store key of the agent token managers share when several run on one store. */
const AGENT_TOKEN_KEY = '/ferry/manager/agent-token';

/** The agent token every manager on this store uses: the first manager's, stored once (create-if-absent). */
async function sharedAgentToken(store: Store, local: string): Promise<string> {
  try {
    return (await store.create<string>(AGENT_TOKEN_KEY, local)).value;
  } catch (e) {
    if (!isFerryError(e, 'STORE_EXISTS')) throw e;
    const kv = await store.get<string>(AGENT_TOKEN_KEY);
    return kv?.value ?? local;
  }
}

/** Starts a manager. */
export async function startManager(o: ManagerOptions): Promise<RunningManager> {
  await mkdir(o.dataDir, { recursive: true, mode: 0o700 });
  const token = o.token ?? (await loadOrCreateToken(join(o.dataDir, 'token')));
  // What the manager (and agents among themselves) present to agents' APIs: not the admin token.
  const localAgentToken = await loadOrCreateToken(join(o.dataDir, 'agent-token'));
  // A bad subnet or vni fails before the store is even opened.
  const wantNetwork = o.clusterNetwork ? clusterNetworkOf(o.clusterNetwork.subnet, o.clusterNetwork.vni) : undefined;
  const store = await openStore(o.storeUrl ?? `sqlite:${join(o.dataDir, 'state.db')}`);
  if (wantNetwork) {
    // Once stored, the cluster network stays (started without it, the manager carries on with the stored one).
    await ensureClusterNetwork(store, wantNetwork).catch(async (e: unknown) => { await store.close(); throw e; });
  }
  // Managers sharing a store must present one token to agents, or agents refuse a new leader's calls.
  const agentToken = o.name === undefined
    ? localAgentToken
    : await sharedAgentToken(store, localAgentToken).catch(async (e: unknown) => { await store.close(); throw e; });
  const leases = new NodeLeases(store, o.nodeLeaseTtl);
  const api = await buildApi({
    store, token, agentToken, version: o.version, leases, spoolDir: join(o.dataDir, 'spool'), nodeLeaseTtl: o.nodeLeaseTtl,
    fenceGraceSeconds: o.fenceGrace ?? DEFAULT_DETECTION.graceSeconds,
  });
  let election: LeaderElection | undefined;
  if (o.name !== undefined) {
    const name = o.name;
    api.get(LEADER_STATUS_ROUTE, { schema: { hide: true } }, async () => ({
      name, role: election?.isLeader() ? 'leader' : 'standby', leader: election?.leader() ?? null,
    }));
    // A standby must not act on the store: everything but liveness and the leader route is redirected.
    api.addHook('onRequest', async (req, reply) => {
      if (!election || election.isLeader()) return;
      const path = req.url.split('?')[0];
      if (path === '/healthz' || path === LEADER_STATUS_ROUTE) return;
      const leader = election.leader();
      if (leader) reply.header(LEADER_HEADER, leader.url);
      throw notLeader(name, leader);
    });
  }
  await api.listen({ host: o.host, port: o.port });
  const addr = api.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : o.port;
  const url = `http://${o.host === '0.0.0.0' ? '127.0.0.1' : o.host}:${port}`;
  const startControllers = (): Loop => {
    const containers = startContainersController(store, (name, e) => o.log(`controller ${name}: ${(e as Error).message}`));
    const migrations = startMigrationsController({ store, agentToken, log: o.log });
    const services = startServicesController(store, (name, e) => o.log(`services controller ${name}: ${(e as Error).message}`));
    const health = startHealthController({ store, timing: { leaseTtlSeconds: o.nodeLeaseTtl, graceSeconds: o.fenceGrace ?? DEFAULT_DETECTION.graceSeconds }, log: o.log });
    return {
      stop: async () => { await Promise.all([containers.stop(), migrations.stop(), services.stop(), health.stop()]); },
      idle: async () => { await services.idle(); await containers.idle(); await migrations.idle(); },
    };
  };
  // Controllers run on the leader only; without a name this manager is the only one and always leads.
  let active: Loop | undefined;
  const controllers: Loop = {
    stop: async () => { const a = active; active = undefined; await a?.stop(); },
    idle: async () => { await active?.idle(); },
  };
  if (o.name === undefined) {
    active = startControllers();
  } else {
    election = new LeaderElection({
      store, name: o.name, url: o.advertiseUrl ?? url, ttlSeconds: o.leaderTtl, log: o.log,
      onElected: () => { o.log(`manager ${o.name} is the leader; controllers started`); active = startControllers(); },
      onDeposed: async (reason) => { o.log(`manager ${o.name} stepped down (${reason}); stopping controllers`); await controllers.stop(); },
    });
    election.start();
  }
  return {
    url, token, store, api, controllers, ...(election ? { election } : {}),
    async stop() {
      await election?.stop();
      await controllers.stop();
      await api.close();
      await store.close();
    },
  };
}
