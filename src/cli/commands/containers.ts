/** Container verbs: run, ps, inspect, logs, exec, update, stop, start, rm, stats. */
import type { Command } from 'commander';
import type { ContainerView } from '../../model/index.ts';
import { parseCpus, parseMemory, formatBytes, parsePort, parseVolume, parseRestart, parseEnv, checkName } from '../../model/text.ts';
import type { CreateContainerInput, ContainerPatch, FerryClient } from '../../client/index.ts';
import { FerryError } from '../../errors/index.ts';
import { table, printJson, age, type OutputFormat } from '../output.ts';

/** Shared context every command handler gets. */
export interface Ctx {
  client(): FerryClient;
  format(): OutputFormat;
  /** Sets the process exit code (for exec). */
  setExit(code: number): void;
}

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

function ports(v: ContainerView): string {
  return v.container.spec.ports.map((p) => `${p.hostIp === '0.0.0.0' ? '' : `${p.hostIp}:`}${p.hostPort}->${p.containerPort}/tcp`).join(', ') || '-';
}

/** One-word-plus state like `running 2m`, `exited (3) 5s ago`, `pending: no ready node…`. */
export function stateText(v: ContainerView): string {
  const st = v.status;
  if (v.container.metadata.deleting) return 'removing';
  if (!st) return 'pending';
  switch (st.phase) {
    case 'running': return `running ${age(st.startedAt).replace(' ago', '')}`;
    case 'exited': case 'stopped': case 'failed':
      return `${st.phase}${st.exitCode !== undefined ? ` (${st.exitCode})` : ''} ${age(st.finishedAt ?? st.updatedAt)}`;
    default: return st.message ? `${st.phase}: ${st.message}` : st.phase;
  }
}

function limits(v: ContainerView): string {
  const r = v.container.spec.resources;
  return [r.memoryBytes ? `mem ${formatBytes(r.memoryBytes)}` : '', r.cpus ? `cpu ${r.cpus}` : ''].filter(Boolean).join(', ') || '-';
}

function psTable(views: ContainerView[]): string {
  return table(['NAME', 'IMAGE', 'STATE', 'NODE', 'IP', 'PORTS', 'LIMITS', 'RESTARTS'], views.map((v) => [
    v.container.metadata.name, v.container.spec.image, stateText(v), v.status?.node || v.container.placement?.node || '-',
    v.status?.ip ?? '-', ports(v), limits(v), String(v.status?.restartCount ?? 0),
  ]));
}

function describe(v: ContainerView): string {
  const c = v.container;
  const st = v.status;
  const rows: [string, string][] = [
    ['Name', c.metadata.name], ['UID', c.metadata.uid], ['Image', c.spec.image], ['State', stateText(v)],
    ['Desired', c.spec.state], ['Node', st?.node || c.placement?.node || '-'],
    ['Placement', c.placement ? `${c.placement.node} (epoch ${c.placement.epoch}): ${c.placement.reason}` : '-'],
    ['Runtime ID', st?.runtimeId || '-'], ['PID', st?.pid ? String(st.pid) : '-'], ['Network', c.spec.network ?? (c.network ? 'default' : '-')],
    ['IP', st?.ip ?? c.network?.ip ?? '-'], ['Ports', ports(v)],
    ['Memory', c.spec.resources.memoryBytes ? formatBytes(c.spec.resources.memoryBytes) : 'unlimited'],
    ['CPUs', c.spec.resources.cpus ? String(c.spec.resources.cpus) : 'unlimited'],
    ['Restart', `${c.spec.restart.policy}${c.spec.restart.maxRetries ? `:${c.spec.restart.maxRetries}` : ''} (restarted ${st?.restartCount ?? 0}×)`],
    ['Command', [...(c.spec.entrypoint ?? []), ...(c.spec.command ?? [])].join(' ') || '(image default)'],
    ['Env', c.spec.env.join(' ') || '-'],
    ['Volumes', c.spec.volumes.map((m) => `${m.kind === 'shared' ? 'shared ' : ''}${m.source}:${m.target}${m.readOnly ? ':ro' : ''}`).join(', ') || '-'],
    ['Rootfs', st?.rootfsMode ?? '-'],
    ['Migratable', !st?.migratable ? '-' : st.migratable.ok ? 'yes' : `no: ${st.migratable.reasons.join('; ')}`],
    ['Created', `${c.metadata.createdAt} (${age(c.metadata.createdAt)})`], ['Started', st?.startedAt ?? '-'],
    ['Finished', st?.finishedAt ?? '-'], ['Exit code', st?.exitCode !== undefined ? String(st.exitCode) : '-'],
    ['Message', st?.message ?? '-'],
    ['Generation', `${c.metadata.generation} (applied ${st?.observedGeneration ?? 0})`],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, val]) => `${`${k}:`.padEnd(w + 2)}${val}`).join('\n');
}

function show(ctx: Ctx, v: ContainerView, human: () => string): void {
  if (ctx.format() === 'json') printJson(v);
  else process.stdout.write(`${human()}\n`);
}

/** Registers the container verbs on the program. */
export function containerCommands(program: Command, ctx: Ctx): void {
  program.command('run').description('create and start a container')
    .argument('<image>', 'image name (e.g. sample)').argument('[command...]', 'command and arguments (replace the image cmd)')
    .option('--name <name>', 'container name (default: a random one)')
    .option('-p, --publish <port>', 'publish a port: [IP:]HOSTPORT:CONTAINERPORT', collect)
    .option('-e, --env <KEY=VALUE>', 'set an environment variable', collect)
    .option('-v, --volume <src:dst[:ro]>', 'bind-mount a host directory (/abs/path:/dst) or mount a host-local named volume (name:/dst)', collect)
    .option('--shared-volume <name:dst[:ro]>', 'mount a named volume from the cluster\'s shared storage: it follows the container when it fails over (fenced by epoch)', collect)
    .option('-m, --memory <size>', 'memory limit, e.g. 128m, 1g')
    .option('--cpus <n>', 'CPU limit in cores, e.g. 0.5')
    .option('--pids-limit <n>', 'maximum number of processes')
    .option('--restart <policy>', 'no | always | on-failure[:MAX]', 'no')
    .option('-u, --user <user>', 'user[:group] to run as')
    .option('-w, --workdir <dir>', 'working directory')
    .option('--entrypoint <path>', 'replace the image entrypoint')
    .option('--node <node>', 'run on this node')
    .option('--network <name>', 'put it on this network (`ferry network ls`; default: the cluster network); fixed once created')
    .option('-d, --detach', 'return once created, without waiting for it to run')
    .option('--timeout <ms>', 'how long to wait for the container to run', '120000')
    .action(async (image: string, command: string[], o: Record<string, string | string[] | boolean | undefined>) => {
      const input: CreateContainerInput = {
        image,
        name: o.name !== undefined ? checkName(o.name as string) : undefined,
        command: command.length > 0 ? command : undefined,
        entrypoint: o.entrypoint !== undefined ? [o.entrypoint as string] : undefined,
        env: ((o.env as string[] | undefined) ?? []).map(parseEnv),
        ports: ((o.publish as string[] | undefined) ?? []).map(parsePort),
        volumes: [...((o.volume as string[] | undefined) ?? []).map((v) => parseVolume(v)), ...((o.sharedVolume as string[] | undefined) ?? []).map((v) => parseVolume(v, { shared: true }))],
        resources: {
          memoryBytes: o.memory !== undefined ? parseMemory(o.memory as string) : undefined,
          cpus: o.cpus !== undefined ? parseCpus(o.cpus as string) : undefined,
          pidsLimit: o.pidsLimit !== undefined ? positiveInt(o.pidsLimit as string, '--pids-limit') : undefined,
        },
        restart: parseRestart(o.restart as string),
        user: o.user as string | undefined, workdir: o.workdir as string | undefined, node: o.node as string | undefined,
        network: o.network !== undefined ? checkName(o.network as string) : undefined,
      };
      const v = await ctx.client().containers.create(input, { wait: !o.detach, timeoutMs: Number(o.timeout) });
      if (ctx.format() === 'json') printJson(v);
      else {
        process.stdout.write(`${v.container.metadata.name}\n`);
        if (v.status && (v.status.phase === 'failed' || v.status.phase === 'exited')) {
          process.stderr.write(`warning: ${v.container.metadata.name} is ${stateText(v)}: ${v.status.message ?? ''}\n`);
          ctx.setExit(1);
        }
      }
    });

  program.command('ps').description('list containers')
    .option('-a, --all', 'include stopped and exited containers')
    .action(async (o: { all?: boolean }) => {
      const all = await ctx.client().containers.list();
      const views = o.all ? all : all.filter((v) => v.status?.phase !== 'exited' && v.status?.phase !== 'stopped' && v.status?.phase !== 'failed');
      if (ctx.format() === 'json') printJson(views);
      else process.stdout.write(`${psTable(views)}\n`);
    });

  program.command('inspect').description('show everything about a container').argument('<name>')
    .action(async (name: string) => {
      const v = await ctx.client().containers.get(name);
      show(ctx, v, () => describe(v));
    });

  program.command('logs').description("print a container's output").argument('<name>')
    .option('-f, --follow', 'keep printing new output').option('-n, --tail <lines>', 'only the last N lines')
    .action(async (name: string, o: { follow?: boolean; tail?: string }) => {
      const ac = new AbortController();
      process.once('SIGINT', () => ac.abort());
      const lines = await ctx.client().containers.logs(name, { follow: o.follow, tail: o.tail !== undefined ? positiveInt(o.tail, '--tail', true) : undefined, signal: ac.signal });
      try {
        for await (const l of lines) {
          if (ctx.format() === 'json') process.stdout.write(`${JSON.stringify(l)}\n`);
          else (l.stream === 'stderr' ? process.stderr : process.stdout).write(`${l.line}\n`);
        }
      } catch (e) {
        if (!ac.signal.aborted) throw e;
      }
    });

  program.command('exec').description('run a command in a running container').argument('<name>').argument('<command...>')
    .option('-e, --env <KEY=VALUE>', 'set an environment variable', collect)
    .option('-w, --workdir <dir>', 'working directory')
    .option('-i, --interactive', 'pass this process\'s standard input to the command')
    .action(async (name: string, command: string[], o: { env?: string[]; workdir?: string; interactive?: boolean }) => {
      let stdin: string | undefined;
      if (o.interactive) {
        const chunks: Buffer[] = [];
        for await (const c of process.stdin) chunks.push(c as Buffer);
        stdin = Buffer.concat(chunks).toString('base64');
      }
      const frames = await ctx.client().containers.exec(name, { args: command, env: o.env?.map(parseEnv), cwd: o.workdir, stdin });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let code = 1;
      for await (const f of frames) {
        if ('stream' in f) {
          const b = Buffer.from(f.data, 'base64');
          if (ctx.format() === 'json') (f.stream === 'stdout' ? out : err).push(b);
          else (f.stream === 'stdout' ? process.stdout : process.stderr).write(b);
        } else if ('exitCode' in f) code = f.exitCode;
        else if ('error' in f) throw new FerryError(f.error.code, 500, f.error.message);
      }
      if (ctx.format() === 'json') printJson({ exitCode: code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
      ctx.setExit(code);
    });

  program.command('update').description('change limits or restart policy of a container in place (no restart)').argument('<name>')
    .option('-m, --memory <size>', 'memory limit').option('--cpus <n>', 'CPU limit in cores')
    .option('--pids-limit <n>', 'maximum number of processes').option('--restart <policy>', 'no | always | on-failure[:MAX]')
    .action(async (name: string, o: { memory?: string; cpus?: string; pidsLimit?: string; restart?: string }) => {
      const patch: ContainerPatch = {};
      if (o.memory !== undefined || o.cpus !== undefined || o.pidsLimit !== undefined) {
        patch.resources = {
          memoryBytes: o.memory !== undefined ? parseMemory(o.memory) : undefined,
          cpus: o.cpus !== undefined ? parseCpus(o.cpus) : undefined,
          pidsLimit: o.pidsLimit !== undefined ? positiveInt(o.pidsLimit, '--pids-limit') : undefined,
        };
      }
      if (o.restart !== undefined) patch.restart = parseRestart(o.restart);
      const v = await ctx.client().containers.update(name, patch, { wait: true });
      show(ctx, v, () => `${name}: ${limits(v)}; restart ${v.container.spec.restart.policy}`);
    });

  for (const [verb, what] of [['stop', 'stop a container (SIGTERM, then SIGKILL after 10 s)'], ['start', 'start a stopped container']] as const) {
    program.command(verb).description(what).argument('<names...>')
      .action(async (names: string[]) => {
        const views = [];
        for (const n of names) views.push(await ctx.client().containers[verb](n, { wait: true }));
        if (ctx.format() === 'json') printJson(views);
        else for (const v of views) process.stdout.write(`${v.container.metadata.name}\n`);
      });
  }

  program.command('rm').description('remove containers (a running one is stopped first)').argument('<names...>')
    .option('-f, --force', 'kill at once instead of stopping gracefully')
    .action(async (names: string[], o: { force?: boolean }) => {
      for (const n of names) await ctx.client().containers.remove(n, { wait: true, force: o.force });
      if (ctx.format() === 'json') printJson({ removed: names });
      else for (const n of names) process.stdout.write(`${n}\n`);
    });

  program.command('stats').description('CPU and memory use of a container (from its cgroup)').argument('<name>')
    .action(async (name: string) => {
      const s = await ctx.client().containers.stats(name) as { cpuUsageNs: number; memoryUsageBytes: number; memoryLimitBytes: number; pids: number };
      if (ctx.format() === 'json') printJson(s);
      else process.stdout.write(`${table(['NAME', 'CPU TIME', 'MEMORY', 'LIMIT', 'PIDS'], [[name, `${(s.cpuUsageNs / 1e9).toFixed(2)}s`, formatBytes(s.memoryUsageBytes), s.memoryLimitBytes ? formatBytes(s.memoryLimitBytes) : 'unlimited', String(s.pids)]])}\n`);
    });
}

/** Parses a positive integer flag or throws a usage error naming the flag. */
export function positiveInt(v: string, flag: string, allowZero = false): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || (!allowZero && n === 0)) {
    throw new FerryError('FERRY_ERR_BAD_FLAG', 400, `${flag} needs a ${allowZero ? 'non-negative' : 'positive'} whole number, not "${v}"`);
  }
  return n;
}
