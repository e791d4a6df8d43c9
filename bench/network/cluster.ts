/**
 * bench/network's own `ferry up --nodes 2` in a temporary home, driven through the CLI, and a
 * teardown that runs `ferry down` and then removes by force whatever of the run is still there
 * (processes, runc containers, mounts, network namespaces, links, cgroups, firewall rules, the home),
 * naming each thing it had to remove. Safe to call twice and on a half-started cluster.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, readlinkSync, rmdirSync, statSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isLive, runCli } from '../../test/support/ferry.ts';
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

/** Starts `ferry up --nodes <nodes>` in a fresh home recorded in `trace` before anything is created. */
export async function startCluster(nodes: number, trace: ClusterTrace): Promise<BenchCluster> {
  const tag = `nb${randomBytes(3).toString('hex')}`;
  const home = await mkdtemp(join(tmpdir(), `ferry-bench-network-${tag}-`));
  trace.home = home;
  // Container roots below the home must be traversable by the user namespace's root.
  await chmod(home, 0o755);
  const ok = async (args: string[]): Promise<string> => {
    const r = await runCli(home, args);
    if (r.code !== 0) throw new Error(`ferry ${args.join(' ')} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
    return r.stdout;
  };
  const json = async <T>(args: string[]): Promise<T> => JSON.parse(await ok(['-o', 'json', ...args])) as T;
  const up = await json<{ simulation: BenchCluster['simulation']; nodes: SimNode[] }>(['up', '--nodes', String(nodes), '--port', '0', '--node-name', tag]);
  trace.simId = up.simulation.id;
  return { home, simulation: up.simulation, nodes: up.nodes, json, ok };
}

/** Waits until container `name` runs with an address; its view. */
export async function running(c: BenchCluster, name: string): Promise<ContainerView & { status: { ip: string; pid: number } }> {
  for (const t0 = Date.now(); Date.now() - t0 < 60_000; await new Promise((r) => setTimeout(r, 200))) {
    const v = await c.json<ContainerView>(['inspect', name]);
    if (v.status?.phase === 'running' && v.status.ip && v.status.pid > 0) return v as ContainerView & { status: { ip: string; pid: number } };
  }
  throw new Error(`${name} did not run with an address within 60 s`);
}

/** `ferry down`, then removes by force what is left of the run; returns what that was (should be nothing). */
export async function teardownCluster(trace: ClusterTrace): Promise<string[]> {
  const { home } = trace;
  if (!home) return [];
  const left: string[] = [];
  let id = trace.simId;
  try { id ??= (JSON.parse(readFileSync(join(home, 'run', 'sim.json'), 'utf8')) as { id: string }).id; } catch { /* no simulation was made */ }
  const nsPrefix = id ? `ferry-${id}-` : undefined;
  const netnsNames = (): string[] => (nsPrefix && existsSync('/run/netns') ? readdirSync('/run/netns').filter((n) => n.startsWith(nsPrefix)) : []);
  // Before `ferry down`: the hosts' namespaces (to find processes still inside them afterwards) and the daemons.
  const inodes = new Set(netnsNames().flatMap((n) => { try { return [statSync(`/run/netns/${n}`).ino]; } catch { return []; } }));
  const runDir = join(home, 'run');
  const daemonPids = existsSync(runDir)
    ? readdirSync(runDir).flatMap((n) => { try { return [(JSON.parse(readFileSync(join(runDir, n), 'utf8')) as { pid?: number }).pid ?? 0]; } catch { return []; } }).filter((p) => p > 0)
    : [];
  const down = await runCli(home, ['down']).catch((e: Error) => ({ code: 1, stdout: '', stderr: e.message }));
  if (down.code !== 0) left.push(`ferry down exited ${down.code}: ${down.stderr.trim()}`);
  for (const pid of daemonPids.filter(isLive)) {
    try { process.kill(pid, 'SIGKILL'); left.push(`daemon ${pid}`); } catch { /* gone meanwhile */ }
  }
  const agentsDir = join(home, 'agents');
  for (const root of existsSync(agentsDir) ? readdirSync(agentsDir).map((n) => join(agentsDir, n, 'runc')) : []) {
    if (!existsSync(root)) continue;
    let ids: string[] = [];
    try { ids = ((JSON.parse(execFileSync('runc', ['--root', root, 'list', '-f', 'json'], { encoding: 'utf8' }) || 'null') ?? []) as { id: string }[]).map((c) => c.id); } catch { /* unreadable: the process sweep below still runs */ }
    for (const cid of ids) {
      left.push(`runc container ${cid}`);
      try { execFileSync('runc', ['--root', root, 'delete', '--force', cid], { stdio: 'ignore' }); } catch { /* best effort */ }
    }
  }
  // Processes of this run: argv naming the home (daemons, shims), or living in one of its hosts.
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map(Number)) {
    if (pid === process.pid || !isLive(pid)) continue;
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const ns = /net:\[(\d+)\]/.exec(readlinkSync(`/proc/${pid}/ns/net`))?.[1];
      if (cmd.includes(home) || (ns !== undefined && inodes.has(Number(ns)))) {
        process.kill(pid, 'SIGKILL');
        left.push(`process ${pid}: ${cmd.split('\0').join(' ').slice(0, 100)}`);
      }
    } catch { /* exited meanwhile */ }
  }
  const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m.startsWith(`${home}/`) || (nsPrefix !== undefined && m.startsWith(`/run/netns/${nsPrefix}`))).reverse();
  for (const m of mounts) {
    left.push(`mount ${m}`);
    try { execFileSync('umount', ['-l', m], { stdio: 'ignore' }); } catch { /* best effort */ }
  }
  for (const n of netnsNames()) {
    left.push(`netns ${n}`);
    try { execFileSync('ip', ['netns', 'del', n], { stdio: 'ignore' }); } catch { await rm(`/run/netns/${n}`, { force: true }).catch(() => undefined); }
  }
  if (id) {
    const links = (): string[] => execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).split('\n')
      .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1] ?? '').filter((n) => n.startsWith(`fu${id}`));
    // Veths of just-deleted namespaces go by themselves, a moment later.
    for (let i = 0; i < 50 && links().length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    for (const n of links().sort().reverse()) {
      left.push(`link ${n}`);
      try { execFileSync('ip', ['link', 'del', n], { stdio: 'ignore' }); } catch { /* gone with its peer */ }
    }
    for (const ctl of ['', ...readdirSync('/sys/fs/cgroup')]) {
      const dir0 = join('/sys/fs/cgroup', ctl);
      if (!statSync(dir0).isDirectory()) continue;
      for (const n of readdirSync(dir0).filter((x) => x.startsWith(`ferry-${id}-h`))) {
        const dir = join(dir0, n);
        const subs = readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory());
        left.push(`cgroup ${dir}${subs.length > 0 ? `/{${subs.map((d) => d.name).join(',')}}` : ''}`);
        for (const d of subs) { try { rmdirSync(join(dir, d.name)); } catch { /* busy */ } }
        try { rmdirSync(dir); } catch { /* busy */ }
      }
    }
    let rules: string[] = [];
    try { rules = execFileSync('iptables', ['-S', 'FORWARD'], { encoding: 'utf8' }).split('\n'); } catch { /* no iptables */ }
    for (const r of rules.filter((l) => l.startsWith('-A ') && l.includes(`"ferry:fu${id}`))) {
      left.push(`iptables: ${r}`);
      try { execFileSync('iptables', r.replace(/^-A /, '-D ').replace(/"/g, '').split(' '), { stdio: 'ignore' }); } catch { /* best effort */ }
    }
  }
  await rm(home, { recursive: true, force: true });
  trace.home = undefined;
  return left;
}
