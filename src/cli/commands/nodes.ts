/** Node verbs: node ls, inspect, cordon, drain, undrain, and the join tokens new hosts join with. */
import type { Command } from 'commander';
import type { ContainerView, JoinTokenView, Migration } from '../../model/index.ts';
import { formatBytes, formatDuration, parseDuration, parseTtl } from '../../model/text.ts';
import type { FerryClient, NodeView } from '../../client/index.ts';
import { FerryError } from '../../errors/index.ts';
import { TERMINAL, type MigrationPhase } from '../../migration/index.ts';
import { table, printJson, age } from '../output.ts';
import { positiveInt, type Ctx } from './containers.ts';

const STRATEGIES = ['auto', 'stop-copy', 'pre-copy', 'post-copy'] as const;

/** What happened to one container of a drained node. */
export interface DrainResult {
  container: string;
  outcome: 'migrated' | 'failed' | 'skipped';
  from: string;
  to?: string;
  migration?: string;
  phase?: string;
  freezeMs?: number;
  totalMs?: number;
  /** Why it failed or was skipped. */
  reason?: string;
}

/** The outcome of `ferry node drain`, as `-o json` prints it. */
export interface DrainReport {
  node: string;
  unschedulable: boolean;
  results: DrainResult[];
  summary: { migrated: number; failed: number; skipped: number; elapsedMs: number };
}

interface DrainOptions {
  concurrency: number;
  strategy: (typeof STRATEGIES)[number];
  timeoutMs: number;
  /** One line per phase a migration enters. */
  progress: (container: string, step: Migration['status']['history'][number]) => void;
  /** The node is cordoned and its containers sorted into those to move and those to skip. */
  planned: (node: NodeView, moving: string[], skipped: DrainResult[]) => void;
  /** One container is done with (migrated, failed or skipped). */
  done: (r: DrainResult) => void;
}

/** Why a container on a drained node is not moved, or undefined when it is (only a running process moves). */
function skipReason(v: ContainerView, node: string): string | undefined {
  if (v.container.metadata.deleting) return 'it is being removed';
  const phase = v.status?.phase ?? 'pending';
  if (phase === 'running') return undefined;
  return `it is ${phase}: no process to move (its definition stays on ${node})`;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Live-migrates one container off `from` (the scheduler picks the target) and follows it to its end. */
async function migrateOff(client: FerryClient, name: string, from: string, o: DrainOptions, deadline: number): Promise<DrainResult> {
  if (Date.now() > deadline) return { container: name, outcome: 'failed', from, reason: `not started: the drain's --timeout of ${formatDuration(o.timeoutMs)} passed` };
  let m: Migration;
  try {
    m = await client.migrations.create({ container: name, strategy: o.strategy });
  } catch (e) {
    return { container: name, outcome: 'failed', from, reason: (e as Error).message };
  }
  let shown = 0;
  let cancelled = false;
  for (let lost: unknown; ; ) {
    for (const h of m.status.history.slice(shown)) o.progress(name, h);
    shown = m.status.history.length;
    if (TERMINAL.has(m.status.phase as MigrationPhase)) break;
    if (!cancelled && Date.now() > deadline) {
      cancelled = true;
      // Rolls back unless the target already owns it (then it finishes, and counts as migrated).
      await client.migrations.cancel(m.metadata.name).catch(() => undefined);
    }
    // The migration goes on in the manager whether or not we watch; a drain that cannot follow it gives up at the deadline.
    if (lost !== undefined && cancelled) {
      return { container: name, outcome: 'failed', from, to: m.spec.to, migration: m.metadata.name, phase: m.status.phase, reason: `lost track of it (${(lost as Error).message}); \`ferry migrations inspect ${m.metadata.name}\`` };
    }
    await sleep(150);
    lost = undefined;
    m = await client.migrations.get(m.metadata.name).catch((e: unknown) => { lost = e; return m; });
  }
  const s = m.status;
  const ok = s.phase === 'Succeeded';
  const why = cancelled ? `cancelled: the drain's --timeout of ${formatDuration(o.timeoutMs)} passed` : `${s.error ?? s.phase}${s.failedIn ? ` (in ${s.failedIn})` : ''}`;
  return {
    container: name, outcome: ok ? 'migrated' : 'failed', from, to: m.spec.to, migration: m.metadata.name, phase: s.phase,
    freezeMs: s.freezeMs, totalMs: s.totalMs, ...(ok ? {} : { reason: why }),
  };
}

/** Cordons `node`, then live-migrates every running container off it, at most `concurrency` at once. */
async function drainNode(client: FerryClient, node: string, o: DrainOptions): Promise<DrainReport> {
  const t0 = Date.now();
  const cordoned = await client.nodes.cordon(node);
  const mine = (await client.containers.list())
    .filter((v) => (v.container.placement?.node ?? v.status?.node) === node)
    .sort((a, b) => a.container.metadata.name.localeCompare(b.container.metadata.name));
  const results: DrainResult[] = [];
  const queue: string[] = [];
  for (const v of mine) {
    const why = skipReason(v, node);
    if (why) results.push({ container: v.container.metadata.name, outcome: 'skipped', from: node, reason: why });
    else queue.push(v.container.metadata.name);
  }
  o.planned(cordoned, [...queue], [...results]);
  for (const r of results) o.done(r);
  const deadline = t0 + o.timeoutMs;
  const worker = async (): Promise<void> => {
    for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
      const r = await migrateOff(client, name, node, o, deadline);
      results.push(r);
      o.done(r);
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency, queue.length) }, worker));
  results.sort((a, b) => a.container.localeCompare(b.container));
  const count = (k: DrainResult['outcome']): number => results.filter((r) => r.outcome === k).length;
  return {
    node, unschedulable: cordoned.node.spec.unschedulable, results,
    summary: { migrated: count('migrated'), failed: count('failed'), skipped: count('skipped'), elapsedMs: Date.now() - t0 },
  };
}

function resultLine(r: DrainResult): string {
  if (r.outcome === 'skipped') return `${r.container}: skipped: ${r.reason}`;
  if (r.outcome === 'failed') return `${r.container}: FAILED${r.migration ? ` (${r.migration})` : ''}: ${r.reason}`;
  return `${r.container}: migrated to ${r.to} (freeze ${r.freezeMs !== undefined ? `${Math.round(r.freezeMs)} ms` : '-'}, total ${r.totalMs !== undefined ? formatDuration(r.totalMs) : '-'})`;
}

function plannedLine(n: NodeView, moving: string[], skipped: DrainResult[], concurrency: number): string {
  const name = n.node.metadata.name;
  const what = moving.length === 0 ? 'no running container to move' : `live-migrating ${moving.length} running container${moving.length === 1 ? '' : 's'}, at most ${concurrency} at once`;
  return `node ${name} cordoned first, so nothing new lands there while it drains; ${what}${skipped.length ? `; skipping ${skipped.length} not running` : ''}`;
}

function cordonLine(n: NodeView): string {
  const name = n.node.metadata.name;
  return n.node.spec.unschedulable
    ? `node ${name} is unschedulable: nothing new is placed or migrated there (undo with \`ferry node undrain ${name}\`)`
    : `node ${name} is schedulable`;
}

/** `k=v` flags as labels. */
function parseLabels(items: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of items) {
    const i = l.indexOf('=');
    if (i < 1) throw new FerryError('FERRY_ERR_BAD_FLAG', 400, `--label needs key=value, not "${l}"`);
    out[l.slice(0, i)] = l.slice(i + 1);
  }
  return out;
}

/** "in 59m", "expired 3m ago". */
function expiresText(t: JoinTokenView, now = Date.now()): string {
  if (t.expired) return `expired ${age(t.expiresAt, now)}`;
  const s = Math.max(0, Math.round((Date.parse(t.expiresAt) - now) / 1000));
  return `in ${s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m` : s < 86_400 ? `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m` : `${Math.floor(s / 86_400)}d`}`;
}

/** Registers `ferry node token …`. */
function tokenCommands(node: Command, ctx: Ctx): void {
  const token = node.command('token').description('join tokens: what a new host joins the cluster with (`ferry agent --join <url> --token <token>`)');
  token.command('create').description('make a join token; it is printed this once')
    .option('--ttl <duration>', 'how long it can be used: 30m, 2h, 1d', '1h')
    .option('--uses <n>', 'how many hosts may join with it', '1')
    .option('--label <k=v>', 'label every node that joins with it gets (repeatable)', (v: string, p: string[] = []) => [...p, v])
    .action(async (o: { ttl: string; uses: string; label?: string[] }) => {
      const ttlSeconds = parseTtl(o.ttl);
      const uses = positiveInt(o.uses, '--uses');
      const client = ctx.client();
      const t = await client.joinTokens.create({ ttlSeconds, uses, labels: parseLabels(o.label ?? []) });
      if (ctx.format() === 'json') return printJson(t);
      // The token alone on stdout, so `T=$(ferry node token create)` works; the how-to on stderr.
      process.stdout.write(`${t.token}\n`);
      process.stderr.write(`join token ${t.id}: ${t.uses} use${t.uses === 1 ? '' : 's'}, expires ${t.expiresAt}; it is shown only now.\n`
        + `On the new host: ferry agent --join ${client.endpoint.url} --token <token> --name <node>\n`);
    });
  token.command('ls').description('list join tokens (never their secrets)').action(async () => {
    const all = await ctx.client().joinTokens.list();
    if (ctx.format() === 'json') return printJson(all);
    process.stdout.write(`${table(['ID', 'EXPIRES', 'USES LEFT', 'CREATED', 'LABELS', 'JOINED'], all.map((t) => [
      t.id, expiresText(t), `${t.usesLeft}/${t.uses}`, age(t.createdAt),
      Object.entries(t.labels).map(([k, v]) => `${k}=${v}`).join(',') || '-', t.joined.join(',') || '-',
    ]))}\n`);
  });
  token.command('rm').description('delete join tokens (nodes that joined with them stay)').argument('<ids...>').action(async (ids: string[]) => {
    for (const id of ids) {
      await ctx.client().joinTokens.remove(id);
      if (ctx.format() !== 'json') process.stdout.write(`${id}\n`);
    }
    if (ctx.format() === 'json') printJson({ removed: ids });
  });
}

/** Registers `ferry node …`. */
/** `region/zone` from the node's labels (`region`, `zone`), `-` when it has neither. */
export function zoneOf(labels: Record<string, string>): string {
  const parts = [labels.region, labels.zone].filter((x): x is string => x !== undefined && x !== '');
  return parts.length > 0 ? parts.join('/') : '-';
}

/** How a node takes part in container networking, in a few characters. */
export function networkOf(n: { underlayIp?: string; hostIp?: string; subnet?: string } | undefined): string {
  if (n?.hostIp) return `overlay ${n.hostIp} via ${n.underlayIp ?? '?'}`;
  if (n?.subnet) return `local ${n.subnet}`;
  return '-';
}

export function nodeCommands(program: Command, ctx: Ctx): void {
  const node = program.command('node').description('inspect, cordon and drain the hosts of the cluster; make join tokens for new ones');
  node.command('ls').description('list nodes').action(async () => {
    const nodes = await ctx.client().nodes.list();
    if (ctx.format() === 'json') return printJson(nodes);
    process.stdout.write(`${table(['NAME', 'STATE', 'ZONE', 'ADDRESS', 'NETWORK', 'CPUS', 'MEMORY', 'CONTAINERS', 'KERNEL', 'CRIU', 'AGENT STARTED'], nodes.map((n) => [
      n.node.metadata.name, n.state + (n.node.spec.unschedulable ? ',unschedulable' : ''), zoneOf(n.node.metadata.labels), n.node.status.address,
      networkOf(n.node.status.network), String(n.node.status.capacity.cpus), formatBytes(n.node.status.capacity.memoryBytes), String(n.containers),
      n.node.status.facts.kernel, n.node.status.facts.criu, age(n.node.status.startedAt),
    ]))}\n`);
  });
  program.command('events').description('what happened to nodes and containers: health changes (Ready, Suspect, Down), failovers')
    .option('-n, --limit <n>', 'how many of the latest', '50')
    .action(async (o: { limit: string }) => {
      const limit = Number(o.limit);
      if (!/^\d+$/.test(o.limit) || limit < 1 || limit > 1000) throw new FerryError('FERRY_ERR_BAD_FLAG', 400, `--limit must be a whole number from 1 to 1000, not "${o.limit}"`);
      const events = await ctx.client().nodes.events(limit);
      if (ctx.format() === 'json') return printJson(events);
      process.stdout.write(`${table(['TIME', 'KIND', 'OBJECT', 'MESSAGE'], events.map((e) => [e.at, e.kind, e.object, e.message]))}\n`);
    });
  node.command('inspect').description('show a node').argument('<name>').action(async (name: string) => {
    const n = await ctx.client().nodes.get(name);
    if (ctx.format() === 'json') return printJson(n);
    const f = n.node.status.facts;
    process.stdout.write([
      `Name:        ${n.node.metadata.name}`, `State:       ${n.state}${n.reason ? ` — ${n.reason}` : ''}`, `Address:     ${n.node.status.address}`,
      `Capacity:    ${n.node.status.capacity.cpus} CPUs, ${formatBytes(n.node.status.capacity.memoryBytes)}`,
      `Containers:  ${n.containers}`, `Labels:      ${Object.entries(n.node.metadata.labels).map(([k, v]) => `${k}=${v}`).join(', ') || '-'}`,
      `Zone:        ${zoneOf(n.node.metadata.labels)}`, `Network:     ${networkOf(n.node.status.network)}`,
      `Kernel:      ${f.kernel} (${f.os}, ${f.arch})`, `runc:        ${f.runc}`, `CRIU:        ${f.criu}`,
      `cgroup:      v${f.cgroupVersion}`, `overlayfs:   ${f.overlay ? 'yes' : 'no'}`, `CPU:         ${f.cpuModel} (${f.cpuFlags.length} flags)`,
      `Agent:       ${n.node.status.agentVersion}, started ${n.node.status.startedAt}`,
    ].join('\n') + '\n');
  });
  node.command('rm').description('forget nodes that are gone (NotReady, nothing placed on them): their records, addresses and credentials')
    .argument('<names...>').action(async (names: string[]) => {
      for (const name of names) await ctx.client().nodes.remove(name);
      if (ctx.format() === 'json') return printJson({ removed: names });
      process.stdout.write(names.map((n) => `node ${n} removed\n`).join(''));
    });
  node.command('cordon').description('mark a node unschedulable (what runs there stays)').argument('<name>').action(async (name: string) => {
    const n = await ctx.client().nodes.cordon(name);
    if (ctx.format() === 'json') return printJson(n);
    process.stdout.write(`${cordonLine(n)}\n`);
  });
  node.command('undrain').alias('uncordon').description('make a node schedulable again').argument('<name>').action(async (name: string) => {
    const n = await ctx.client().nodes.uncordon(name);
    if (ctx.format() === 'json') return printJson(n);
    process.stdout.write(`${cordonLine(n)}\n`);
  });
  node.command('drain').description('mark a node unschedulable, then live-migrate every running container off it').argument('<name>')
    .option('--concurrency <n>', 'migrations at once', '2')
    .option('--strategy <s>', 'stop-copy | pre-copy | post-copy | auto', 'auto')
    .option('--timeout <d>', 'give up (rolling back what has not switched) after this long', '10m')
    .action(async (name: string, o: { concurrency: string; strategy: string; timeout: string }) => {
      const strategy = STRATEGIES.find((s) => s === o.strategy);
      if (!strategy) throw new FerryError('FERRY_ERR_BAD_FLAG', 400, `--strategy must be stop-copy, pre-copy, post-copy or auto, not "${o.strategy}"`);
      const concurrency = positiveInt(o.concurrency, '--concurrency');
      const timeoutMs = parseDuration(o.timeout);
      const human = ctx.format() !== 'json';
      const t0 = Date.now();
      const say = (line: string): void => { if (human) process.stdout.write(`${line}\n`); };
      const report = await drainNode(ctx.client(), name, {
        concurrency, strategy, timeoutMs,
        progress: (c, h) => {
          if (human) process.stderr.write(`  ${((Date.parse(h.at) - t0) / 1000).toFixed(2).padStart(6)}s  ${c}: ${h.phase}${h.message ? `: ${h.message}` : ''}\n`);
        },
        planned: (n, moving, skipped) => say(plannedLine(n, moving, skipped, concurrency)),
        done: (r) => say(resultLine(r)),
      });
      if (!human) printJson(report);
      const s = report.summary;
      say(`drained ${name}: migrated ${s.migrated}, failed ${s.failed}, skipped ${s.skipped} in ${formatDuration(s.elapsedMs)}; ${name} stays unschedulable (undo with \`ferry node undrain ${name}\`)`);
      if (s.failed > 0) ctx.setExit(1);
    });
  tokenCommands(node, ctx);
}
