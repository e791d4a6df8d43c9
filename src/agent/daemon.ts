/**
 * The agent process: runs this node's containers. It registers with the manager, heartbeats,
 * watches its assignments through the manager's API (never the store directly), reconciles them
 * with runc, and reports status back. Containers outlive the agent: their supervisors hold them,
 * and a restarted agent adopts them.
 */
import { mkdir, readdir, rmdir, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { FerryClient } from '../client/index.ts';
import type { Assignment } from '../model/index.ts';
import { DEFAULT_DETECTION, keys, keyName } from '../model/index.ts';
import { createRuncRuntime } from './runtime/index.ts';
import { createImageStore } from './images/index.ts';
import { createNodeNetwork } from './network/index.ts';
import { RecordStore } from './records.ts';
import { Reconciler } from './reconciler.ts';
import { MigrationAgent, defaultScratchDir, freePort, type MigrationOutcome } from './migrate.ts';
import { CRIU_CACHE_FILE, cleanPagesSupported, primeCriuCache } from './criu-cache.ts';
import type { OverlayConfig } from './network/index.ts';
import type { NodeRegistered, NodeRegistration } from '../client/index.ts';
import { AgentClient } from '../client/index.ts';
import { Fence } from './fence.ts';
import { StatusReporter } from './reporter.ts';
import { buildAgentApi, imageRecord } from './server.ts';
import { readCapacity, readFacts } from './facts.ts';
import { agentErrors } from './errors.ts';
import { isFerryError } from '../errors/index.ts';
import { TERMINAL } from '../migration/index.ts';
import { startNameService } from './dns/index.ts';
import { startSpares, stopSpares } from './spawn-ahead.ts';

/** How to run an agent. */
export interface AgentOptions {
  readonly name: string;
  readonly dataDir: string;
  readonly managerUrl: string;
  readonly token: string;
  readonly host: string;
  readonly port: number;
  /** URL the manager uses to reach this agent; default http://host:port. */
  readonly advertiseUrl?: string;
  readonly runcPath: string;
  readonly criuPath: string;
  readonly shimPath: string;
  /** native/exec/ferry-exec: commands run through spares started ahead (see spawn-ahead.ts); without it, plain spawns. */
  readonly execPath?: string;
  readonly sampleAppPath: string;
  /** Prefix of runtime ids, cgroup parent and network names (unique per simulated node / test run). */
  readonly idPrefix: string;
  readonly cgroupParent: string;
  readonly bridge: string;
  readonly subnet: string;
  /**
   * This host's address on the underlay (what other hosts reach it by). When the manager runs a
   * cluster network (VXLAN), the agent joins it with this address as its VXLAN endpoint.
   */
  readonly underlayIp?: string;
  /** Containers' traffic to anywhere beyond the host leaves masqueraded as the host. */
  readonly outboundNat?: boolean;
  readonly labels: Record<string, string>;
  /** The cluster's shared volume root on this host (a directory every host mounts); shared volumes need it. */
  readonly sharedVolumes?: string;
  /** Where migration images go when they fit (see defaultScratchDir, the default); null: the data directory only. */
  readonly migrationScratch?: string | null;
  readonly heartbeatMs: number;
  readonly stopTimeoutMs: number;
  /** How often running containers are re-scanned for fds CRIU cannot dump (default 15 s). */
  readonly rescanMs?: number;
  readonly version: string;
  readonly log: (msg: string) => void;
}

/** A running agent. */
export interface RunningAgent {
  readonly url: string;
  readonly reconciler: Reconciler;
  /** Stops the agent; containers keep running unless `removeContainers`. */
  stop(o?: { removeContainers?: boolean }): Promise<void>;
}

/** How long a peer's answer to a contact check may take. */
const PEER_ASK_TIMEOUT_MS = 1000;
/** How long kept containers are spared the fence when the agent stops with the whole cluster. */
const SUSPEND_ON_STOP_MS = 24 * 3600_000;

/** True when the manager answers a heartbeat within a second. */
async function managerReachable(client: FerryClient, name: string): Promise<boolean> {
  try {
    await Promise.race([client.agent.heartbeat(name), new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), 1000).unref())]);
    return true;
  } catch {
    return false;
  }
}

/** True when `e` is the abort of a watch that `relist` ended on purpose. */
function relistAsked(e: unknown): boolean {
  return e instanceof Error && e.name === 'AbortError';
}

/** How often running containers are re-scanned for fds CRIU cannot dump. */
const MIGRATABILITY_REFRESH_MS = 15_000;

/**
 * Errors that mean "no manager leads right now" (standbys only, or none reachable), and how often the
 * agent asks again then: the new leader's first assignments wait for this agent's watch, and a try
 * costs one refused or NOT_LEADER answer per manager.
 */
const LEADERLESS = new Set(['FERRY_ERR_NOT_LEADER', 'FERRY_ERR_UNREACHABLE']);
const LEADERLESS_RETRY_MS = 250;

/** The uid/gid range containers' user namespaces map to (the recipe in the migration notes). */
export const ID_MAP = { containerId: 0, hostId: 100000, size: 65536 } as const;

/** Removes the (empty) cgroup parent directories in every hierarchy; rmdir refuses non-empty ones. */
async function removeCgroupParent(parent: string): Promise<void> {
  const hierarchies = await readdir('/sys/fs/cgroup').catch(() => [] as string[]);
  for (const h of ['', ...hierarchies]) await rmdir(join('/sys/fs/cgroup', h, parent)).catch(() => undefined);
}

/** Containers' root (host uid 100000) must be able to reach their rootfs: every ancestor needs o+x. */
async function checkTraversable(dir: string): Promise<void> {
  for (let d = resolve(dir); ; d = dirname(d)) {
    const st = await stat(d);
    if ((st.mode & 0o001) === 0) throw agentErrors.BAD_DATA_DIR({ dir: d });
    if (d === dirname(d)) return;
  }
}

/** Starts an agent. */
export async function startAgent(o: AgentOptions): Promise<RunningAgent> {
  await mkdir(o.dataDir, { recursive: true });
  await checkTraversable(o.dataDir);
  const log = o.log;
  // Whom peers' contact checks authenticate as: the cluster's agent token, known after registering.
  let apiToken = o.token;
  let onFenced = (): void => undefined;
  let onUnfenced = (): void => undefined;
  const fence = new Fence({
    file: join(o.dataDir, 'fence', 'stamp'), leaseTtlSeconds: DEFAULT_DETECTION.leaseTtlSeconds, graceSeconds: DEFAULT_DETECTION.graceSeconds, log,
    askPeer: (url) => new AgentClient({ url, token: apiToken }).contact(AbortSignal.timeout(PEER_ASK_TIMEOUT_MS)),
    onFenced: () => onFenced(), onUnfenced: () => onUnfenced(),
  });
  await fence.start();
  if (o.execPath && !startSpares(o.execPath)) log(`${o.execPath} is missing: every command forks this process (~15 ms each; run scripts/setup)`);
  const runtime = createRuncRuntime({
    stateDir: join(o.dataDir, 'runtime'), runcRoot: join(o.dataDir, 'runc'), shimPath: o.shimPath,
    runcPath: o.runcPath, criuPath: o.criuPath, cgroupParent: o.cgroupParent, log,
    logPathFor: (id) => join(o.dataDir, 'containers', id, 'container.log'),
    fence: { file: join(o.dataDir, 'fence', 'stamp'), get afterMs() { return fence.afterMs; } },
  });
  const images = createImageStore({ root: join(o.dataDir, 'images'), idShift: { hostId: ID_MAP.hostId, size: ID_MAP.size }, sampleAppPath: o.sampleAppPath, log });
  const records = new RecordStore(join(o.dataDir, 'containers'));
  const client = new FerryClient({ url: o.managerUrl, token: o.token });
  const reporter = new StatusReporter(client, o.name, log);

  // The address the manager reaches this agent by; with port 0 one is picked now, because a node on
  // the cluster network registers before anything else (its network settings come back).
  const listenHost = o.host === '0.0.0.0' ? '127.0.0.1' : o.host;
  const port = o.port === 0 ? await freePort(listenHost) : o.port;
  const url = o.advertiseUrl ?? `http://${listenHost}:${port}`;
  // With the clean-pages shim a pre-copy final dump leaves out what the write tracker vouches for;
  // its CRIU runs keep a cache of their own (see criu-cache.ts).
  // The cache first: the check then finds it (a CRIU that probes on a /run that is not a tmpfs
  // leaves an empty temporary file there).
  const cleanPages = (async (): Promise<boolean> => {
    const r = await primeCriuCache(o.criuPath, { cleanPages: true });
    if (!await cleanPagesSupported(o.criuPath)) return false;
    if (r.status === 'failed') log(`CRIU kernel-facts cache for clean-pages dumps not written: ${r.reason}`);
    return true;
  })();
  const [facts, kdat, criuCleanPages] = await Promise.all([readFacts(o.runcPath, o.criuPath), primeCriuCache(o.criuPath), cleanPages]);
  if (kdat.status === 'written') log(`CRIU kernel-facts cache written to ${CRIU_CACHE_FILE} (/run is not a tmpfs, so CRIU would probe the kernel on every run)`);
  if (kdat.status === 'failed') log(`CRIU kernel-facts cache not written (every CRIU run probes the kernel, 30-60 ms): ${kdat.reason}`);
  if (!criuCleanPages) log(`CRIU at ${o.criuPath} runs without Ferry's clean-pages shim: a pre-copy final dump pins every page`);
  const registration = (): NodeRegistration => ({
    name: o.name, address: url, labels: o.labels, capacity: readCapacity(), facts, agentVersion: o.version,
    network: o.underlayIp ? { underlayIp: o.underlayIp } : { subnet: o.subnet },
  });
  // Registering first: the manager may refuse this node (an overlapping subnet, a bad underlay
  // address) — then the start fails with its reason instead of retrying forever — and on the cluster
  // network its answer carries this node's network settings.
  const registered = async (r: NodeRegistered, sentAt: number): Promise<void> => {
    fence.setTiming(r.leaseTtl, r.fenceGrace ?? 0);
    await fence.contact(sentAt, r.state ?? 'Ready');
  };
  const overlay = await joinCluster(client, registration, o.underlayIp, log, registered);
  // The manager and the other agents call this agent's API with the cluster's agent token (a joined
  // host's own credential is good only towards the manager). A manager too old to tell: our token.
  apiToken = (await client.agent.apiToken().catch(() => ({ token: o.token }))).token;
  const network = createNodeNetwork({
    stateDir: join(o.dataDir, 'network'), bridge: o.bridge, log, outboundNat: o.outboundNat === true,
    ...(overlay ? { subnet: overlay.subnet, cluster: overlay.cluster } : { subnet: o.subnet }),
  });

  await network.init();
  await images.ensureSample();
  await images.warmUp();
  /** True while migration `id` has not ended (true when the manager cannot tell). */
  const migrationActive = async (id: string): Promise<boolean> => {
    try {
      const m = await client.migrations.get(id);
      return !TERMINAL.has(m.status.phase);
    } catch (e) {
      return !isFerryError(e, 'MIGRATION_NOT_FOUND');
    }
  };
  const migrationOutcome = async (id: string): Promise<MigrationOutcome> => {
    try {
      const m = await client.migrations.get(id);
      return !TERMINAL.has(m.status.phase) ? 'active' : m.status.phase === 'Succeeded' ? 'succeeded' : 'ended';
    } catch (e) {
      if (isFerryError(e, 'MIGRATION_NOT_FOUND')) return 'unknown';
      return 'active'; // the manager did not answer: nothing is removed on a guess
    }
  };
  const volumes = { local: join(o.dataDir, 'volumes'), ...(o.sharedVolumes ? { shared: o.sharedVolumes } : {}) };
  const reconciler = new Reconciler({
    node: o.name, volumes, idPrefix: o.idPrefix, stopTimeoutMs: o.stopTimeoutMs, runtime, images, network, records, idMap: ID_MAP, log,
    report: (s) => reporter.report(s), clearStatus: (n, uid) => reporter.clear(n, uid), migrationActive,
    fenceDue: () => fence.due(),
  });
  await reconciler.adopt();

  const reportImages = async (): Promise<void> => {
    await client.agent.reportImages(o.name, (await images.list()).map(imageRecord));
  };
  const pageServerHost = new URL(o.advertiseUrl ?? `http://${o.host === '0.0.0.0' ? '127.0.0.1' : o.host}`).hostname;
  const scratchDir = o.migrationScratch === undefined ? defaultScratchDir(resolve(o.dataDir)) : o.migrationScratch ?? undefined;
  const migrations = new MigrationAgent({
    node: o.name, volumes, runtime, images, network, records, idMap: ID_MAP, log, dataDir: o.dataDir, idPrefix: o.idPrefix, token: apiToken, reconciler,
    ...(scratchDir !== undefined ? { scratchDir } : {}),
    postCopy: { checkpoint: (id, co) => runtime.checkpointLazy(id, co), criuPath: o.criuPath, host: pageServerHost },
    // FERRY_DIRTY_TRACK=0 turns pre-copy's write tracking off (bench/migration compares both).
    ...(process.env.FERRY_DIRTY_TRACK === '0' ? { dirtyTrack: false } : {}),
    // FERRY_CRIU_CLEAN_PAGES=0 turns the clean-pages final dump off (bench/migration can compare both).
    criuCleanPages: criuCleanPages && process.env.FERRY_CRIU_CLEAN_PAGES !== '0',
  });
  const api: FastifyInstance = await buildAgentApi({
    node: o.name, token: [apiToken, o.token], runtime, images, spoolDir: join(o.dataDir, 'spool'),
    knows: (id) => reconciler.recordById(id) !== undefined, imagesChanged: reportImages, migrations,
    managerOkAgoMs: () => fence.managerOkAgoMs(),
  });
  await api.listen({ host: o.host, port });
  // Containers reach services and each other by name: DNS on every container network's gateway here.
  // Without the cluster network only this node's containers are reachable, so only they are named.
  const names = startNameService({ read: (ro) => client.agent.names(ro), defaultSubnet: network.subnet.cidr, log, ...(overlay ? {} : { node: o.name }) });

  const ac = new AbortController();
  const register = async (): Promise<void> => {
    const sentAt = Date.now();
    await registered(await client.agent.register(registration()), sentAt);
  };
  /** The other nodes: the fence's peers, and on the overlay their underlay addresses make the VXLAN flood list. */
  const syncPeers = async (): Promise<void> => {
    const nodes = await client.nodes.list();
    await fence.setPeers(nodes.filter((n) => n.node.metadata.name !== o.name && n.state !== 'Down').map((n) => n.node.status.address));
    if (!network.cluster) return;
    await network.setPeers(nodes.flatMap((n) => (n.node.status.network?.underlayIp ? [n.node.status.network.underlayIp] : [])));
  };
  // Fenced: nothing starts; the manager's Ready (after a fence) lets what it still assigns here run
  // again — after a fresh list, so nothing moved away meanwhile comes back.
  let relist = (): void => undefined;
  onFenced = () => void reconciler.fence().catch((e: Error) => log(`fence: ${e.message}`));
  onUnfenced = () => { reconciler.unfence(); relist(); };

  // Connect, list, watch; on any failure start over after a pause. The first successful list
  // lets the reconciler tear down containers that are no longer assigned.
  const connection = (async () => {
    let delay = 200;
    // The same failure is logged again only after a while (an election retries four times a second).
    let lastLogged = { msg: '', at: 0 };
    while (!ac.signal.aborted) {
      try {
        await register();
        await syncPeers();
        reporter.resend();
        await reportImages();
        const prefix = keys.assignments(o.name);
        const listed = await client.list<Assignment>(prefix);
        reconciler.resync(listed.items.map((i) => i.value));
        void migrations.removeStale(migrationOutcome).catch((e: Error) => log(`removing ended migrations' files: ${e.message}`));
        delay = 200;
        const conn = new AbortController();
        relist = () => conn.abort();
        for await (const ev of await client.watch(prefix, { afterRevision: listed.revision, signal: AbortSignal.any([ac.signal, conn.signal]) })) {
          if ('error' in (ev as object)) throw new Error((ev as unknown as { error: { message: string } }).error.message);
          if (ev.type === 'put') reconciler.set(ev.value as Assignment);
          else reconciler.delete(keyName(ev.key));
        }
      } catch (e) {
        if (ac.signal.aborted) break;
        // A re-list asked for (after a fence was lifted) is not a failure: go round at once.
        if (relistAsked(e)) { delay = 0; continue; }
        // No leader (an election under way) or none reachable: the cluster is between managers;
        // waiting longer would only delay the new leader's work.
        if (isFerryError(e) && LEADERLESS.has(e.code)) delay = Math.min(delay, LEADERLESS_RETRY_MS);
        const msg = (e as Error).message;
        if (msg !== lastLogged.msg || Date.now() - lastLogged.at >= 10_000) {
          log(`manager connection: ${msg}; retrying in ${delay} ms${msg === lastLogged.msg ? ' (still)' : ''}`);
          lastLogged = { msg, at: Date.now() };
        }
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 5000);
    }
  })();

  const heartbeat = setInterval(() => {
    const sentAt = Date.now();
    client.agent.heartbeat(o.name).then((r) => fence.contact(sentAt, r.state ?? 'Ready')).catch((e: Error) => log(`heartbeat failed: ${e.message}`));
    syncPeers().catch((e: Error) => log(`overlay peers: ${e.message}`));
  }, o.heartbeatMs);
  // "Migratable: yes/no, why" stays current while containers run (fds come and go).
  const rescan = setInterval(() => reconciler.refreshMigratability(), o.rescanMs ?? MIGRATABILITY_REFRESH_MS);

  return {
    url,
    reconciler,
    async stop(so = {}) {
      ac.abort();
      clearInterval(heartbeat);
      fence.stop();
      // Kept containers outlive this agent. With the manager gone too (the whole cluster is stopping)
      // nothing can take them over: keep the shims from fencing them. With the manager up, the fence
      // stands: back within the limit, or they are killed before the manager fails them over.
      if (!so.removeContainers && !(await managerReachable(client, o.name))) await fence.suspend(SUSPEND_ON_STOP_MS);
      clearInterval(rescan);
      await connection;
      await names.stop();
      if (so.removeContainers) {
        reconciler.resync([]);
        await reconciler.idle();
        await reporter.settled();
      }
      // The bridge and the cgroup parent go when nothing uses them any more; running containers keep theirs.
      if ((await records.list()).length === 0) {
        await network.destroy();
        await removeCgroupParent(o.cgroupParent);
      } else {
        await network.close();
      }
      reconciler.stop();
      await migrations.close();
      reporter.close();
      runtime.close();
      stopSpares();
      await api.close();
    },
  };
}

/**
 * Registers until the manager answers and returns its cluster network settings (subnet, this
 * node's overlay address, VXLAN id), or undefined when the cluster has none or this agent has no
 * underlay address. A refusal (e.g. an overlapping subnet) ends the start with the manager's reason.
 */
async function joinCluster(
  client: FerryClient, registration: () => NodeRegistration, underlayIp: string | undefined, log: (m: string) => void,
  registered: (r: NodeRegistered, sentAt: number) => Promise<void>,
): Promise<{ subnet: string; cluster: OverlayConfig } | undefined> {
  for (let delay = 200; ; delay = Math.min(delay * 2, 5000)) {
    try {
      const sentAt = Date.now();
      const r = await client.agent.register(registration());
      await registered(r, sentAt);
      if (!underlayIp) return undefined;
      if (!r.network) {
        log(`the manager runs no cluster network: --underlay-ip ${underlayIp} is not used; containers get node-local addresses`);
        return undefined;
      }
      return { subnet: r.network.subnet, cluster: { vni: r.network.vni, underlayIp, hostIp: r.network.hostIp } };
    } catch (e) {
      // 4xx: the manager said no (a conflict, a bad token); anything else is "not reachable yet".
      if (isFerryError(e) && e.status >= 400 && e.status < 500) throw e;
      log(`registering with the manager: ${(e as Error).message}; retrying in ${delay} ms`);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}
