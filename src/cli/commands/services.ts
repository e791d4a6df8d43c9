/** Service verbs: service create, scale, update, ls, inspect, rm. */
import type { Command } from 'commander';
import type { Health, ServiceSpec, ServiceView } from '../../model/index.ts';
import { checkName, parseEnv, parseCpus, parseDuration, parseMemory, TCP_PORT_RANGE } from '../../model/text.ts';
import { FerryError } from '../../errors/index.ts';
import { table, printJson, age } from '../output.ts';
import { positiveInt, type Ctx } from './containers.ts';

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

/** The flags `service create` and `service update` share. */
export interface ServiceFlags {
  image?: string; replicas?: string; port?: string; httpHost?: string[]; path?: string; tcpPort?: string; health?: string;
  balance?: string; sticky?: boolean; maxUnavailable?: string; maxSurge?: string; drain?: string; memory?: string; cpus?: string;
  env?: string[]; strategy?: string; constraint?: string[]; onePerHost?: boolean; class?: string; network?: string; label?: string[];
}

function bad(msg: string): FerryError {
  return new FerryError('FERRY_ERR_BAD_FLAG', 400, msg);
}

/** Parses `--health http:/healthz` or `--health tcp`. */
export function parseHealth(v: string): Health {
  if (v === 'tcp') return { kind: 'tcp' };
  if (v.startsWith('http:/')) return { kind: 'http', path: v.slice('http:'.length) };
  throw bad(`--health takes http:/PATH (e.g. http:/healthz) or tcp, not "${v}"`);
}

/** Turns flags into the spec fields they set (only those given, so an update changes only them). */
export function specFromFlags(o: ServiceFlags, cur?: ServiceSpec): Partial<ServiceSpec> {
  const s: Partial<ServiceSpec> = {};
  if (o.image !== undefined) s.image = o.image;
  if (o.replicas !== undefined) s.replicas = replicasArg(o.replicas);
  if (o.port !== undefined) s.port = portArg(o.port, '--port', 1, 65535);
  if (o.httpHost !== undefined || o.path !== undefined) {
    const hosts = o.httpHost ?? cur?.http?.hosts;
    if (!hosts || hosts.length === 0) throw bad('--path needs --http-host: a path prefix routes requests for a host name');
    const pathPrefix = o.path ?? cur?.http?.pathPrefix ?? '/';
    if (!pathPrefix.startsWith('/')) throw bad(`--path takes a path prefix starting with /, not "${pathPrefix}"`);
    s.http = { hosts, pathPrefix };
  }
  if (o.tcpPort !== undefined) s.tcpPort = portArg(o.tcpPort, '--tcp-port', TCP_PORT_RANGE.first, TCP_PORT_RANGE.last);
  if (o.health !== undefined) s.health = parseHealth(o.health);
  if (o.balance !== undefined) {
    if (o.balance !== 'roundrobin' && o.balance !== 'leastconn') throw bad(`--balance takes roundrobin or leastconn, not "${o.balance}"`);
    s.balance = o.balance;
  }
  if (o.sticky !== undefined) s.sticky = o.sticky;
  if (o.maxUnavailable !== undefined || o.maxSurge !== undefined) {
    s.update = {
      maxUnavailable: o.maxUnavailable !== undefined ? positiveInt(o.maxUnavailable, '--max-unavailable', true) : cur?.update.maxUnavailable ?? 0,
      maxSurge: o.maxSurge !== undefined ? positiveInt(o.maxSurge, '--max-surge', true) : cur?.update.maxSurge ?? 1,
    };
  }
  if (o.drain !== undefined) s.drainMs = o.drain === '0' ? 0 : parseDuration(o.drain);
  if (o.memory !== undefined || o.cpus !== undefined) {
    s.resources = { ...cur?.resources, ...(o.memory !== undefined ? { memoryBytes: parseMemory(o.memory) } : {}), ...(o.cpus !== undefined ? { cpus: parseCpus(o.cpus) } : {}) };
  }
  if (o.env !== undefined) s.env = o.env.map(parseEnv);
  if (o.strategy !== undefined || o.constraint !== undefined || o.onePerHost !== undefined || o.class !== undefined) {
    if (o.strategy !== undefined && o.strategy !== 'spread' && o.strategy !== 'binpack') throw bad(`--strategy takes spread or binpack, not "${o.strategy}"`);
    s.scheduling = {
      ...cur?.scheduling,
      ...(o.strategy !== undefined ? { strategy: o.strategy as 'spread' | 'binpack' } : {}),
      ...(o.constraint !== undefined ? { constraints: o.constraint } : {}),
      ...(o.onePerHost !== undefined ? { onePerHost: o.onePerHost } : {}),
      ...(o.class !== undefined ? { workloadClass: o.class } : {}),
    };
  }
  if (o.network !== undefined) s.network = o.network;
  if (o.label !== undefined) {
    s.labels = {};
    for (const l of o.label) {
      const i = l.indexOf('=');
      if (i < 1) throw bad(`--label needs key=value, not "${l}"`);
      s.labels[l.slice(0, i)] = l.slice(i + 1);
    }
  }
  return s;
}

function replicasArg(v: string): number {
  if (!/^\d+$/.test(v)) throw bad(`replicas must be a whole number from 0 to 1000, not "${v}"`);
  const n = Number(v);
  if (n > 1000) throw bad(`replicas must be at most 1000, not ${n}`);
  return n;
}

function portArg(v: string, flag: string, first: number, last: number): number {
  const n = /^\d+$/.test(v) ? Number(v) : NaN;
  if (!(n >= first && n <= last)) throw bad(`${flag} takes a port from ${first} to ${last}, not "${v}"`);
  return n;
}

function routeText(s: ServiceSpec): string {
  const r = [...(s.http ? s.http.hosts.map((h) => `http://${h}${s.http!.pathPrefix}`) : []), ...(s.tcpPort !== undefined ? [`tcp:${s.tcpPort}`] : [])];
  return r.join(', ') || '(internal)';
}

/** `ferry service ls` as a table. */
export function servicesTable(views: ServiceView[]): string {
  return table(['NAME', 'IMAGE', 'REPLICAS', 'ROUTES', 'PORT', 'CREATED'], views.map((v) => [
    v.service.metadata.name + (v.service.metadata.deleting ? ' (removing)' : ''), v.service.spec.image,
    `${v.ready}/${v.service.spec.replicas}`, routeText(v.service.spec), String(v.service.spec.port), age(v.service.metadata.createdAt),
  ]));
}

function describe(v: ServiceView): string {
  const s = v.service.spec;
  const rows: [string, string][] = [
    ['Name', v.service.metadata.name], ['Image', s.image], ['Replicas', `${v.ready} ready of ${s.replicas} wanted (revision ${v.revision})`],
    ['Routes', routeText(s)], ['Port', String(s.port)], ['Health', s.health ? (s.health.kind === 'http' ? `http ${s.health.path}` : 'tcp') : '-'],
    ['Balance', `${s.balance}${s.sticky ? ', sticky' : ''}`], ['Update', `max-unavailable ${s.update.maxUnavailable}, max-surge ${s.update.maxSurge}, drain ${s.drainMs} ms`],
    ['Scheduling', [s.scheduling.strategy ?? 'spread', ...(s.scheduling.constraints ?? []), s.scheduling.onePerHost ? 'one-per-host' : '', s.scheduling.workloadClass ? `class ${s.scheduling.workloadClass}` : ''].filter(Boolean).join(', ')],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  const head = rows.map(([k, val]) => `${`${k}:`.padEnd(w + 2)}${val}`).join('\n');
  const reps = table(['REPLICA', 'NODE', 'IP', 'PHASE', 'REVISION', 'WHY THIS NODE'], v.replicas.map((r) => [
    r.name, r.node ?? '-', r.ip ?? '-', r.retiring ? `${r.phase} (retiring)` : r.phase, r.revision, r.reason ?? r.message ?? '-',
  ]));
  return `${head}\n\n${reps}`;
}

/** True when the service runs its wanted count of up-to-date replicas and nothing else. */
export function converged(v: ServiceView): boolean {
  return v.ready === v.service.spec.replicas && v.replicas.length === v.service.spec.replicas;
}

/** Waits until the service converges (or is gone), printing progress on stderr. */
async function waitConverged(ctx: Ctx, name: string, timeoutMs: number, removing = false): Promise<ServiceView | undefined> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    let v: ServiceView | undefined;
    try {
      v = await ctx.client().services.get(name);
    } catch (e) {
      if (removing && (e as { code?: string }).code === 'FERRY_ERR_SERVICE_NOT_FOUND') return undefined;
      throw e;
    }
    if (!removing && converged(v)) return v;
    const line = removing ? `${name}: removing, ${v.replicas.length} replica(s) left` : `${name}: ${v.ready}/${v.service.spec.replicas} ready, ${v.replicas.length} replica(s)`;
    if (line !== last && ctx.format() !== 'json') process.stderr.write(`${line}\n`);
    last = line;
    if (Date.now() > deadline) throw new FerryError('FERRY_ERR_TIMEOUT', 504, `timed out after ${timeoutMs} ms waiting for service ${name} (${line}); \`ferry service inspect ${name}\` shows why`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

function withSpecFlags(c: Command): Command {
  return c.option('--replicas <n>', 'how many replicas run').option('--port <port>', 'the port the replicas listen on (default 80)')
    .option('--http-host <host>', 'route HTTP requests for this host name to the service (repeatable)', collect)
    .option('--path <prefix>', 'only requests whose path starts with this (default /)')
    .option('--tcp-port <port>', `route TCP connections to this entry-point port (${TCP_PORT_RANGE.first}-${TCP_PORT_RANGE.last})`)
    .option('--health <check>', 'health check at the entry point: http:/PATH or tcp')
    .option('--balance <algo>', 'roundrobin (default) or leastconn').option('--sticky', 'sticky sessions (HTTP, by cookie)')
    .option('--max-unavailable <n>', 'rolling updates: replicas that may be missing (default 0)')
    .option('--max-surge <n>', 'rolling updates: extra replicas meanwhile (default 1)')
    .option('--drain <duration>', 'a leaving replica gets this long to finish its requests (default 5s)')
    .option('-m, --memory <size>', 'memory limit per replica').option('--cpus <n>', 'CPU limit per replica')
    .option('-e, --env <KEY=VALUE>', 'environment variable (repeatable)', collect)
    .option('--strategy <s>', 'placement: spread (default) or binpack')
    .option('--constraint <expr>', 'node constraint: KEY, KEY==VALUE or KEY!=VALUE (repeatable)', collect)
    .option('--one-per-host', 'at most one replica per node').option('--class <class>', 'workload class: cpu, io, memory or network')
    .option('--network <name>', 'named network of the replicas').option('--label <k=v>', 'label the replicas (repeatable)', collect)
    .option('--wait', 'wait until every replica runs the new spec').option('--timeout <duration>', 'with --wait: give up after this long (default 2m)');
}

function emit(ctx: Ctx, v: ServiceView, line: string): void {
  if (ctx.format() === 'json') printJson(v);
  else process.stdout.write(`${line}\n`);
}

/** Registers `ferry service …`. */
export function serviceCommands(program: Command, ctx: Ctx): void {
  const service = program.command('service').description('manage services: replicated containers behind the entry point');

  withSpecFlags(service.command('create').description('create a service').argument('<name>').requiredOption('--image <image>', 'image of the replicas'))
    .action(async (name: string, o: ServiceFlags & { wait?: boolean; timeout?: string }) => {
      const spec = specFromFlags(o);
      let v = await ctx.client().services.create({ ...spec, name: checkName(name), image: o.image! });
      if (o.wait) v = (await waitConverged(ctx, name, o.timeout ? parseDuration(o.timeout) : 120_000))!;
      emit(ctx, v, `${name} ${routeText(v.service.spec)} (${v.ready}/${v.service.spec.replicas} ready)`);
    });

  service.command('scale').description('change the number of replicas').argument('<name>').argument('<replicas>')
    .option('--wait', 'wait until the count is reached').option('--timeout <duration>', 'with --wait: give up after this long (default 2m)')
    .action(async (name: string, n: string, o: { wait?: boolean; timeout?: string }) => {
      let v = await ctx.client().services.update(name, { replicas: replicasArg(n) });
      if (o.wait) v = (await waitConverged(ctx, name, o.timeout ? parseDuration(o.timeout) : 120_000))!;
      emit(ctx, v, `${name} scaled to ${v.service.spec.replicas} (${v.ready} ready)`);
    });

  withSpecFlags(service.command('update').description('change a service; a new image or template rolls the replicas').argument('<name>').option('--image <image>', 'new image'))
    .action(async (name: string, o: ServiceFlags & { wait?: boolean; timeout?: string }) => {
      const cur = (await ctx.client().services.get(name)).service.spec;
      const change = specFromFlags(o, cur);
      if (Object.keys(change).length === 0) throw bad('nothing to change: give at least one flag (see `ferry service update --help`)');
      let v = await ctx.client().services.update(name, change);
      if (o.wait) v = (await waitConverged(ctx, name, o.timeout ? parseDuration(o.timeout) : 120_000))!;
      emit(ctx, v, `${name} updated (revision ${v.revision}; ${v.ready}/${v.service.spec.replicas} ready)`);
    });

  service.command('ls').description('list services').action(async () => {
    const views = await ctx.client().services.list();
    if (ctx.format() === 'json') printJson(views);
    else process.stdout.write(`${servicesTable(views)}\n`);
  });

  service.command('inspect').description('show a service: each replica, its node and why').argument('<name>').action(async (name: string) => {
    const v = await ctx.client().services.get(name);
    if (ctx.format() === 'json') printJson(v);
    else process.stdout.write(`${describe(v)}\n`);
  });

  service.command('rm').description('remove services (replicas are drained first)').argument('<names...>')
    .option('--wait', 'wait until they are gone').option('--timeout <duration>', 'with --wait: give up after this long (default 2m)')
    .action(async (names: string[], o: { wait?: boolean; timeout?: string }) => {
      for (const n of names) await ctx.client().services.remove(n);
      if (o.wait) for (const n of names) await waitConverged(ctx, n, o.timeout ? parseDuration(o.timeout) : 120_000, true);
      if (ctx.format() === 'json') printJson({ removed: names });
      else for (const n of names) process.stdout.write(`${n}\n`);
    });
}
