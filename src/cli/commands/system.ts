/** Process verbs: up, down, and the daemons themselves (manager, agent). */
import { hostname } from 'node:os';
import { chmod, mkdir, readFile, writeFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { FerryError, isFerryError } from '../../errors/index.ts';
import { FerryClient } from '../../client/index.ts';
import { up, upCluster, down, needToken, onShutdown, stamp, type RunFile } from '../daemons.ts';
import { MAX_SIM_NODES, checkClusterSubnet, checkNodeCount, checkVni, parseCidr, simErrors } from '../simulation.ts';
import { ferryHome, managerUrls } from '../config.ts';
import { homePaths, TOOLS } from '../paths.ts';
import { printJson } from '../output.ts';
import { parseHttpListen, parseTcpListen } from './lb.ts';
import { TCP_PORT_RANGE } from '../../model/text.ts';
import type { Ctx } from './containers.ts';
import { positiveInt } from './containers.ts';

const VERSION = '0.1.0';

/** Registers the process verbs. */
export function systemCommands(program: Command, ctx: Ctx, globals: () => { home?: string }): void {
  program.command('up').description('start Ferry on this machine: manager + one agent (or N simulated hosts), state in SQLite')
    .option('--host <addr>', 'address the API listens on (with --nodes: the underlay bridge address)', '127.0.0.1')
    .option('--port <port>', 'API port (0 = any free port)', '7670')
    .option('--agent-port <port>', 'agent API port (0 = any free port)', '0')
    .option('--node-name <name>', 'name of this node', hostname().split('.')[0])
    .option('--agent-arg <arg>', 'extra argument for the agent (repeatable; for tests)', (v: string, p: string[] = []) => [...p, v])
    .option('--nodes <n>', `simulate N hosts on this machine (2-${MAX_SIM_NODES}; 1 with --managers 3): each its own network namespace, address, agent, data dir and cgroup parent`, '1')
    .option('--managers <n>', 'with --nodes: 1 manager on SQLite, or 3 managers electing a leader over a 3-member etcd (control-plane HA)', '1')
    .option('--cluster-subnet <cidr>', 'with --nodes: the cluster-wide container network', '10.216.0.0/16')
    .option('--vni <n>', 'with --nodes: VXLAN network id of the cluster network', '4216')
    .option('--outbound-nat', 'containers may reach beyond their host, masqueraded as the host (every agent)')
    .option('--lb-http <addr:port>', 'the entry point\'s HTTP listener (default 127.0.0.1:8080; with --nodes: port 80 on the first host)')
    .option('--lb-tcp <addr:first-last>', `the entry point's TCP listeners (default 127.0.0.1:${TCP_PORT_RANGE.first}-${TCP_PORT_RANGE.last}; with --nodes: on the first host)`)
    .option('--no-lb', 'start no entry point')
    .action(async (o: { host: string; port: string; agentPort: string; nodeName: string; agentArg?: string[]; nodes: string; managers: string; clusterSubnet: string; vni: string; outboundNat?: boolean; lb: boolean; lbHttp?: string; lbTcp?: string }, cmd: Command) => {
      if (o.outboundNat) o.agentArg = [...(o.agentArg ?? []), '--outbound-nat'];
      const home = ferryHome(globals().home);
      // Every flag is checked before anything is created.
      const nodes = checkNodeCount(o.nodes);
      const managers = checkManagerCount(o.managers, cmd.getOptionValueSource('nodes') === 'cli');
      // Several managers need the simulated underlay (and etcd on it), even for one host.
      const simulated = nodes >= 2 || managers === 3;
      const port = positiveInt(o.port, '--port', true);
      const agentPort = positiveInt(o.agentPort, '--agent-port', true);
      const progress = (m: string): void => { if (ctx.format() !== 'json') process.stderr.write(`${m}…\n`); };
      const lbHttp = o.lbHttp ?? (simulated ? '0.0.0.0:80' : '127.0.0.1:8080');
      const lbTcp = o.lbTcp ?? `${simulated ? '0.0.0.0' : '127.0.0.1'}:${TCP_PORT_RANGE.first}-${TCP_PORT_RANGE.last}`;
      parseHttpListen(lbHttp);
      parseTcpListen(lbTcp);
      const lb = o.lb ? { http: lbHttp, tcp: lbTcp } : false as const;
      if (simulated) {
        if (cmd.getOptionValueSource('host') === 'cli') throw simErrors.BAD_FLAG({ flag: '--host', reason: 'cannot be combined with --nodes (the manager listens on the simulated underlay)' });
        const clusterSubnet = checkClusterSubnet(o.clusterSubnet);
        const vni = checkVni(o.vni);
        const c = await upCluster({ home, port, agentPort, nodeName: o.nodeName, extraAgentArgs: o.agentArg, nodes, managers, clusterSubnet, vni, lb, progress });
        if (ctx.format() === 'json') printJson({ ...c, home });
        else {
          process.stdout.write(`Ferry is up with ${nodes} simulated host(s) (underlay ${c.simulation.subnet} on bridge ${c.simulation.bridge}). API: ${c.api}  home: ${home}\n`);
          for (const n of c.nodes) process.stdout.write(`  ${n.name}  ${n.underlayIp}  netns ${n.netns}\n`);
          if (managers === 3) {
            process.stdout.write(`Managers (one leads, the others stand by): ${c.managers.map((m) => `${m.name} ${m.url}`).join(', ')}\n`);
            process.stdout.write(`etcd: ${(c.etcd ?? []).map((m) => `${m.name} ${m.clientUrl}`).join(', ')}\n`);
          }
          if (c.entryPoint) process.stdout.write(`Entry point: ${c.entryPoint} (on ${c.nodes[0]!.name})\n`);
          process.stdout.write(managers === 3 ? 'Dashboard: `ferry dashboard` prints the leader\'s URL with the token\n' : `Dashboard: ${c.api}/ui/ (\`ferry dashboard\` prints it with the token)\n`);
        }
        return;
      }
      const r = await up({ home, host: o.host, port, agentPort, nodeName: o.nodeName, extraAgentArgs: o.agentArg, lb, progress });
      if (ctx.format() === 'json') printJson({ ...r, home });
      else {
        process.stdout.write(`Ferry is up. API: ${r.api}  node: ${r.node}  home: ${home}${r.entryPoint ? `  entry point: ${r.entryPoint}` : ''}\n`);
        process.stdout.write(`Dashboard: ${r.api}/ui/ (\`ferry dashboard\` prints it with the token)\n`);
        process.stdout.write(r.entryPoint
          ? `Try: ferry service create web --image sample --replicas 2 --http-host web.local --wait; curl -H 'Host: web.local' ${r.entryPoint}/\n`
          : 'Try: ferry run --name web -p 8080:80 --memory 128m sample\n');
      }
    });

  program.command('down').description('stop Ferry on this machine (removes its containers unless --keep-containers)')
    .option('--keep-containers', 'leave containers running; the next `ferry up` adopts them')
    .action(async (o: { keepContainers?: boolean }) => {
      const home = ferryHome(globals().home);
      const r = await down({ home, keepContainers: o.keepContainers === true, progress: (m) => { if (ctx.format() !== 'json') process.stderr.write(`${m}…\n`); } });
      if (ctx.format() === 'json') printJson(r);
      else {
        process.stdout.write(r.stopped.length === 0 ? 'Ferry was not running.\n' : `Ferry is down (${r.removed.length} container(s) removed).\n`);
        if (r.etcd) process.stdout.write(`etcd members ${r.etcd.join(', ')} stopped (their data stays in ${homePaths(home).etcd}).\n`);
        if (r.simulation) process.stdout.write(`Simulated hosts ${r.simulation} removed.\n`);
      }
    });

  program.command('manager').description('run the manager in the foreground (`ferry up` starts it for you)')
    .option('--host <addr>', 'listen address', '127.0.0.1').option('--port <port>', 'listen port', '7670')
    .option('--store <url>', 'store URL (default sqlite:<home>/manager/state.db)')
    .option('--node-lease <seconds>', 'seconds without a heartbeat before a node is Suspect (its lease lapses)', '6')
    .option('--fence-grace <seconds>', 'seconds a node stays Suspect before it is Down and its containers fail over (agents fence themselves before)', '3')
    .option('--cluster-subnet <cidr>', 'run a cluster-wide container network (VXLAN) on this subnet')
    .option('--vni <n>', 'VXLAN network id of the cluster network (default 4216; needs --cluster-subnet)')
    .option('--name <name>', 'run for leader under this name among managers sharing one store (etcd://…); standbys redirect clients to the leader')
    .option('--advertise-url <url>', 'with --name: the API URL clients are sent to while this manager leads (default the listen URL)')
    .option('--leader-ttl <seconds>', 'with --name: seconds a dead leader keeps the role before a standby takes over', '5')
    .action(async (o: { host: string; port: string; store?: string; nodeLease: string; fenceGrace: string; clusterSubnet?: string; vni?: string; name?: string; advertiseUrl?: string; leaderTtl: string }, cmd: Command) => {
      const home = ferryHome(globals().home);
      const p = homePaths(home);
      if (o.name === undefined && (o.advertiseUrl !== undefined || cmd.getOptionValueSource('leaderTtl') === 'cli')) {
        throw simErrors.BAD_FLAG({ flag: o.advertiseUrl !== undefined ? '--advertise-url' : '--leader-ttl', reason: 'needs --name (it is about electing a leader among managers)' });
      }
      if (o.vni !== undefined && o.clusterSubnet === undefined) throw simErrors.BAD_FLAG({ flag: '--vni', reason: 'needs --cluster-subnet' });
      const clusterNetwork = o.clusterSubnet === undefined ? undefined : { subnet: checkClusterSubnet(o.clusterSubnet), vni: checkVni(o.vni ?? '4216') };
      // The daemons' code is loaded only by the commands that run them: every other command starts fast.
      const { startManager } = await import('../../manager/index.ts');
      const m = await startManager({
        dataDir: p.manager, storeUrl: o.store, host: o.host, port: positiveInt(o.port, '--port', true), token: process.env.FERRY_TOKEN,
        nodeLeaseTtl: positiveInt(o.nodeLease, '--node-lease'), fenceGrace: positiveInt(o.fenceGrace, '--fence-grace'), version: VERSION, log: stamp,
        ...(clusterNetwork ? { clusterNetwork } : {}),
        ...(o.name !== undefined ? { name: o.name, leaderTtl: positiveInt(o.leaderTtl, '--leader-ttl') } : {}),
        ...(o.advertiseUrl !== undefined ? { advertiseUrl: o.advertiseUrl } : {}),
      });
      await mkdir(p.run, { recursive: true });
      // Several managers may share a home (`ferry up --managers 3`): each named one has its own run file.
      const runFile = o.name === undefined ? p.managerRun : p.managerRunOf(o.name);
      const run: RunFile = { pid: process.pid, url: m.url, role: 'manager', ...(o.name !== undefined ? { name: o.name } : {}) };
      await writeFile(runFile, JSON.stringify(run));
      stamp(`manager listening on ${m.url}`);
      await onShutdown(async () => {
        stamp('manager stopping');
        await m.stop();
        await rm(runFile, { force: true });
      });
    });

  program.command('agent').description('run a node agent in the foreground (`ferry up` starts one for you)')
    .option('--manager <url>', 'manager API URL (the agent authenticates with the cluster token in FERRY_TOKEN)')
    .option('--join <url>', 'join the cluster at this manager API URL (or several managers\' URLs separated by commas) with a join token (instead of --manager and FERRY_TOKEN)')
    .option('--token <token>', 'with --join: the join token (`ferry node token create`); needed only until the node has its own credential')
    .option('--name <name>', 'node name', hostname().split('.')[0])
    .option('--host <addr>', 'agent API listen address', '127.0.0.1').option('--port <port>', 'agent API port', '0')
    .option('--advertise <url>', 'URL the manager uses to reach this agent')
    .option('--data-dir <dir>', 'agent data directory (default <home>/agents/<name>)')
    .option('--id-prefix <prefix>', 'prefix of container runtime ids', 'ferry-')
    .option('--cgroup-parent <name>', 'cgroup parent of containers', 'ferry')
    .option('--bridge <name>', 'container bridge', 'ferry0')
    .option('--subnet <cidr>', 'container subnet of this node', '10.213.0.0/24')
    .option('--label <k=v>', 'node label (repeatable)', (v: string, p: string[] = []) => [...p, v])
    .option('--heartbeat-ms <ms>', 'heartbeat interval', '1000')
    .option('--shared-volumes <dir>', 'the cluster\'s shared volume root on this host (a directory every host mounts: NFS, CephFS…); shared volumes need it')
    .option('--stop-timeout-ms <ms>', 'grace between SIGTERM and SIGKILL', '10000')
    .option('--migration-scratch <dir>', 'where migration images go when they fit (default: a directory on /dev/shm when it is a tmpfs; "none": always the data directory)')
    .option('--rescan-ms <ms>', 'how often running containers are re-checked for migratability', '15000')
    .option('--underlay-ip <ip>', 'this host\'s address on the underlay (its VXLAN endpoint in a cluster network)')
    .option('--outbound-nat', 'let containers reach beyond this host: their traffic leaves masqueraded as the host (off by default)')
    .action(async (o: Record<string, string | string[] | undefined>, cmd: Command) => {
      const home = ferryHome(globals().home);
      const p = homePaths(home);
      const name = o.name as string;
      const underlayIp = o.underlayIp as string | undefined;
      if (underlayIp !== undefined && !parseCidr(`${underlayIp}/32`)) throw simErrors.BAD_FLAG({ flag: '--underlay-ip', reason: `needs an IPv4 address, not "${underlayIp}"` });
      if ((o.manager === undefined) === (o.join === undefined)) {
        throw simErrors.BAD_FLAG({ flag: '--manager or --join', reason: 'is needed, not both: --manager <url> with the cluster token in FERRY_TOKEN, or --join <url> --token <join token>' });
      }
      const dataDir = (o.dataDir as string | undefined) ?? join(p.agents, name);
      // `--token` also names the program-wide API token, which commander parses first: read both.
      const joinToken = (cmd.optsWithGlobals() as { token?: string }).token;
      const { managerUrl, token } = o.join !== undefined
        ? await nodeCredential({ url: o.join as string, token: joinToken, name, dataDir, log: stamp })
        : { managerUrl: o.manager as string, token: needToken() };
      const { startAgent } = await import('../../agent/index.ts');
      const a = await startAgent({
        name, dataDir, managerUrl, token,
        host: o.host as string, port: positiveInt(o.port as string, '--port', true), advertiseUrl: o.advertise as string | undefined,
        runcPath: TOOLS.runc, criuPath: TOOLS.criu, shimPath: TOOLS.shim, execPath: TOOLS.exec, sampleAppPath: TOOLS.sampleApp,
        idPrefix: o.idPrefix as string, cgroupParent: o.cgroupParent as string, bridge: o.bridge as string, subnet: o.subnet as string,
        labels: Object.fromEntries(((o.label as string[] | undefined) ?? []).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)])),
        heartbeatMs: positiveInt(o.heartbeatMs as string, '--heartbeat-ms'), stopTimeoutMs: positiveInt(o.stopTimeoutMs as string, '--stop-timeout-ms', true),
        rescanMs: positiveInt(o.rescanMs as string, '--rescan-ms'),
        ...(o.sharedVolumes !== undefined ? { sharedVolumes: resolve(o.sharedVolumes as string) } : {}),
        ...(o.migrationScratch !== undefined ? { migrationScratch: o.migrationScratch === 'none' ? null : resolve(o.migrationScratch as string) } : {}),
        ...(underlayIp !== undefined ? { underlayIp } : {}),
        outboundNat: (o.outboundNat as unknown) === true,
        version: VERSION, log: stamp,
      });
      await mkdir(p.run, { recursive: true });
      const run: RunFile = { pid: process.pid, url: a.url, role: 'agent', name };
      await writeFile(p.agentRun(name), JSON.stringify(run));
      stamp(`agent ${name} listening on ${a.url}`);
      await onShutdown(async () => {
        stamp(`agent ${name} stopping (containers keep running)`);
        await a.stop();
        await rm(p.agentRun(name), { force: true });
      });
    });
}

/** Validates `--managers`: 1, or 3 (which needs `--nodes`, given explicitly, since the managers run on the simulated underlay). */
export function checkManagerCount(v: string, nodesGiven: boolean): 1 | 3 {
  if (v.trim() !== '1' && v.trim() !== '3') {
    throw simErrors.BAD_FLAG({ flag: '--managers', reason: `must be 1 (one manager on SQLite) or 3 (three managers on a 3-member etcd: a majority survives one loss), not "${v}"` });
  }
  if (v.trim() === '3' && !nodesGiven) {
    throw simErrors.BAD_FLAG({ flag: '--managers 3', reason: 'needs --nodes N (N ≥ 1): the managers and their etcd run on the simulated hosts\' underlay' });
  }
  return v.trim() === '3' ? 3 : 1;
}

/** What a joined agent keeps in its data dir (mode 0600): its own credential and where it is good. */
interface StoredCredential {
  managerUrl: string;
  node: string;
  credential: string;
  joinedAt: string;
}

/**
 * The manager URL and bearer token of an agent started with `--join`: the credential stored in its
 * data dir when the manager still takes it, else a new one traded for the join token (and stored).
 */
async function nodeCredential(o: { url: string; token?: string; name: string; dataDir: string; log: (m: string) => void }): Promise<{ managerUrl: string; token: string }> {
  // Several managers' URLs stay a list: the client follows whichever leads, now and after a failover.
  const managerUrl = managerUrls(o.url, '--join').join(',');
  const file = join(o.dataDir, 'credential.json');
  const stored = await readFile(file, 'utf8').then((t) => JSON.parse(t) as StoredCredential, () => undefined);
  const again = `join again: ferry agent --join ${managerUrl} --token <token> (an admin makes one with \`ferry node token create\`)`;
  if (stored && stored.managerUrl === managerUrl && stored.node === o.name) {
    try {
      await new FerryClient({ url: managerUrl, token: stored.credential }).nodes.list();
      o.log(`using the credential of node ${o.name} stored in ${file}`);
      return { managerUrl, token: stored.credential };
    } catch (e) {
      // Not reachable yet: the agent retries on its own; only a refusal means the credential is gone.
      if (!isFerryError(e) || e.status < 400 || e.status >= 500) {
        o.log(`the manager at ${managerUrl} did not answer (${(e as Error).message}); starting with the stored credential`);
        return { managerUrl, token: stored.credential };
      }
      if (o.token === undefined) throw new FerryError('FERRY_ERR_CREDENTIAL_REFUSED', 401, `the manager refused the credential stored in ${file} (${e.message}); ${again}`);
      o.log(`the manager refused the stored credential (${e.message}); joining again with the token`);
    }
  }
  if (o.token === undefined) throw simErrors.BAD_FLAG({ flag: '--join', reason: `needs --token <join token> the first time (an admin makes one with \`ferry node token create\`)` });
  let credential: string;
  try {
    credential = (await new FerryClient({ url: managerUrl }).agent.join(o.name, o.token)).credential;
  } catch (e) {
    if (!isFerryError(e)) throw e;
    throw new FerryError(e.code, e.status, `joining the cluster at ${managerUrl} as node ${o.name} failed: ${e.message}`, e.details, { cause: e });
  }
  await mkdir(o.dataDir, { recursive: true });
  const rec: StoredCredential = { managerUrl, node: o.name, credential, joinedAt: new Date().toISOString() };
  await writeFile(file, `${JSON.stringify(rec, null, 2)}\n`, { mode: 0o600 });
  await chmod(file, 0o600);
  o.log(`joined the cluster at ${managerUrl} as node ${o.name}; its credential is stored in ${file}`);
  return { managerUrl, token: credential };
}
