/**
 * bench/lb's own `ferry up --nodes 2` (the entry point on host 1) in a temporary home, driven through
 * the CLI, its service `web`, and a teardown that runs `ferry down` and then removes by force whatever
 * of the run is still there (the multi-host test fixture's sweep), naming each thing it had to remove.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { chmod, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliHelpers, runCli, type CliResult } from '../../test/support/ferry.ts';
import type { ClusterTrace } from '../network/cluster.ts';
export { teardownCluster, type ClusterTrace } from '../network/cluster.ts';
import type { Migration, ServiceView } from '../../src/model/index.ts';

/** One simulated host as `ferry -o json up --nodes N` reports it. */
export interface SimNode {
  readonly name: string;
  readonly netns: string;
  readonly underlayIp: string;
}

/** A running simulated cluster with its entry point. */
export interface LbCluster {
  readonly home: string;
  readonly simulation: { readonly id: string; readonly bridge: string; readonly subnet: string };
  readonly nodes: readonly SimNode[];
  /** The entry point's URL as `ferry up` reports it (HTTP on host 1's underlay address). */
  readonly entryPoint: string;
  /** Runs `ferry --home <home> -o json …args` and parses stdout; throws on a non-zero exit. */
  json<T>(args: string[]): Promise<T>;
  /** Runs `ferry --home <home> …args`; throws on a non-zero exit. */
  ok(args: string[]): Promise<string>;
  /** Runs `ferry --home <home> …args`: exit code and both streams. */
  cli(args: string[]): Promise<CliResult>;
}


/** Starts `ferry up --nodes 2` in a fresh home recorded in `trace` before anything is created. */
export async function startCluster(trace: ClusterTrace): Promise<LbCluster> {
  const tag = `lb${randomBytes(3).toString('hex')}`;
  const home = await mkdtemp(join(tmpdir(), `ferry-bench-lb-${tag}-`));
  trace.home = home;
  // Container roots below the home must be traversable by the user namespace's root.
  await chmod(home, 0o755);
  const cli = (args: string[]): Promise<CliResult> => runCli(home, args);
  const { ok, json } = cliHelpers(cli);
  const up = await json<{ simulation: LbCluster['simulation']; nodes: SimNode[]; entryPoint?: string }>(['up', '--nodes', '2', '--port', '0', '--node-name', tag]);
  trace.simId = up.simulation.id;
  if (!up.entryPoint) throw new Error('ferry up started no entry point');
  return { home, simulation: up.simulation, nodes: up.nodes, entryPoint: up.entryPoint, json, ok, cli };
}

/** The service's replicas that are not retiring. */
export async function activeReplicas(c: LbCluster, service: string): Promise<ServiceView['replicas']> {
  return (await c.json<ServiceView>(['service', 'inspect', service])).replicas.filter((r) => !r.retiring);
}

/**
 * Waits until `service` has exactly `n` replicas, all running with an address on revision `revision`
 * (when given) and none retiring; returns them.
 */
export async function settled(c: LbCluster, service: string, n: number, revision?: string, timeoutMs = 120_000): Promise<ServiceView['replicas']> {
  let last = '';
  for (const t0 = Date.now(); Date.now() - t0 < timeoutMs; await new Promise((r) => setTimeout(r, 250))) {
    const v = await c.json<ServiceView>(['service', 'inspect', service]);
    const rs = v.replicas;
    last = rs.map((r) => `${r.name} ${r.phase}${r.retiring ? ' retiring' : ''} ${r.revision}`).join(', ');
    if (rs.length === n && rs.every((r) => !r.retiring && r.phase === 'running' && r.ip && r.node && (!revision || r.revision === revision))) return rs;
  }
  throw new Error(`${service} did not settle at ${n} running replicas within ${timeoutMs} ms: ${last}`);
}

/** The service's current revision (what `service update` changes). */
export async function revisionOf(c: LbCluster, service: string): Promise<string> {
  return (await c.json<ServiceView>(['service', 'inspect', service])).revision;
}

/**
 * `ferry -o json migrate <replica> --to <node> --strategy <s>`: the Migration as it ended (it exits
 * 1 when the migration did not succeed but still prints it); throws when it printed none.
 */
export async function migrate(c: LbCluster, replica: string, to: string, strategy: string): Promise<Migration> {
  const r = await c.cli(['-o', 'json', 'migrate', replica, '--to', to, '--strategy', strategy]);
  if (r.stdout.trim().startsWith('{')) return JSON.parse(r.stdout) as Migration;
  throw new Error(`ferry migrate ${replica} --to ${to} exited ${r.code}: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
}


/**
 * What of the run is still on the machine after the teardown: network namespaces (`ip netns`) and
 * links (`ip -br link`) of simulation `simId`, processes whose command line names `paths` (the home,
 * the bench's temp dir: daemons, shims, the hand-written HAProxy, wrk, the load tool), and the paths.
 */
export function leftoversAfter(simId: string | undefined, paths: readonly string[]): string[] {
  const left: string[] = [];
  const lines = (argv: string[]): string[] => {
    try { return execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8' }).split('\n'); } catch { return []; }
  };
  if (simId) {
    for (const n of lines(['ip', 'netns', 'list'])) if (n.startsWith(`ferry-${simId}-`)) left.push(`netns ${n.split(' ')[0]}`);
    for (const l of lines(['ip', '-br', 'link'])) if (l.startsWith(`fu${simId}`)) left.push(`link ${l.split(/\s+/)[0]}`);
  }
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map(Number)) {
    if (pid === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
      if (paths.some((p) => cmd.includes(p))) left.push(`process ${pid}: ${cmd.slice(0, 120)}`);
    } catch { /* exited meanwhile */ }
  }
  for (const p of paths) if (existsSync(p)) left.push(`path ${p}`);
  return left;
}
