/**
 * bench/network's own `ferry up --nodes 2` in a temporary home, driven through the CLI, and a
 * teardown that runs `ferry down` and then removes by force whatever of the run is still there (the
 * multi-host test fixture's sweep: processes, runc containers, mounts, network namespaces, links,
 * cgroups, firewall rules, the home), naming each thing it had to remove.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliHelpers, runCli } from '../../test/support/ferry.ts';
import { teardownCluster as teardownFerryCluster } from '../../test/support/cluster.ts';
import type { ContainerView } from '../../src/model/index.ts';

/** One simulated host as `ferry -o json up --nodes N` reports it. */
export interface SimNode {
  readonly name: string;
  readonly netns: string;
  readonly underlayIp: string;
}

/** A running simulated cluster. */
export interface BenchCluster {
  readonly home: string;
  readonly simulation: { readonly id: string; readonly bridge: string; readonly subnet: string; readonly gateway: string };
  readonly nodes: readonly SimNode[];
  /** The managers `up` started (one, or three with `--managers 3`). */
  readonly managers: readonly { readonly name?: string; readonly url: string; readonly pid: number }[];
  /** Runs `ferry --home <home> -o json …args` and parses stdout; throws on a non-zero exit. */
  json<T>(args: string[]): Promise<T>;
  /** Runs `ferry --home <home> …args`; throws on a non-zero exit. */
  ok(args: string[]): Promise<string>;
}

/** What a run made, as far as it got (the teardown's input). */
export interface ClusterTrace {
  home?: string;
  simId?: string;
}

/** Starts `ferry up --nodes <nodes> …upArgs` in a fresh home recorded in `trace` before anything is created. */
export async function startCluster(nodes: number, trace: ClusterTrace, upArgs: string[] = []): Promise<BenchCluster> {
  const tag = `nb${randomBytes(3).toString('hex')}`;
  const home = await mkdtemp(join(tmpdir(), `ferry-bench-network-${tag}-`));
  trace.home = home;
  // Container roots below the home must be traversable by the user namespace's root.
  await chmod(home, 0o755);
  const { ok, json } = cliHelpers((args) => runCli(home, args));
  const up = await json<{ simulation: BenchCluster['simulation']; nodes: SimNode[]; managers: BenchCluster['managers'] }>(['up', '--nodes', String(nodes), '--port', '0', '--node-name', tag, ...upArgs]);
  trace.simId = up.simulation.id;
  return { home, simulation: up.simulation, nodes: up.nodes, managers: up.managers, json, ok };
}

/** Waits until container `name` runs with an address; its view. */
export async function running(c: BenchCluster, name: string): Promise<ContainerView & { status: { ip: string; pid: number } }> {
  for (const t0 = Date.now(); Date.now() - t0 < 60_000; await new Promise((r) => setTimeout(r, 200))) {
    const v = await c.json<ContainerView>(['inspect', name]);
    if (v.status?.phase === 'running' && v.status.ip && v.status.pid > 0) return v as ContainerView & { status: { ip: string; pid: number } };
  }
  throw new Error(`${name} did not run with an address within 60 s`);
}

/**
 * `ferry down`, then removes by force what is left of the run (the test fixture's own sweep); returns
 * what that was (should be nothing). Safe to call twice.
 */
export async function teardownCluster(trace: ClusterTrace): Promise<string[]> {
  const { home } = trace;
  if (!home) return [];
  const left = await teardownFerryCluster({ home, ...(trace.simId ? { id: trace.simId } : {}) });
  trace.home = undefined;
  return left;
}
