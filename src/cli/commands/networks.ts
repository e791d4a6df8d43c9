/** Network verbs: network create, ls, inspect, rm. */
import type { Command } from 'commander';
import type { NetworkView } from '../../model/index.ts';
import { checkName } from '../../model/text.ts';
import { FerryError } from '../../errors/index.ts';
import { table, printJson, age } from '../output.ts';
import { positiveInt, type Ctx } from './containers.ts';

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

/** What `ferry network create NAME [--subnet] [--vni] [--label k=v]…` asks the manager for. */
export function createInput(name: string, o: { subnet?: string; vni?: string; label?: string[] }): { name: string; subnet?: string; vni?: number; labels: Record<string, string> } {
  const labels: Record<string, string> = {};
  for (const l of o.label ?? []) {
    const i = l.indexOf('=');
    if (i < 1) throw new FerryError('FERRY_ERR_BAD_FLAG', 400, `--label needs key=value, not "${l}"`);
    labels[l.slice(0, i)] = l.slice(i + 1);
  }
  return { name: checkName(name), subnet: o.subnet, vni: o.vni !== undefined ? positiveInt(o.vni, '--vni') : undefined, labels };
}

/** `ferry network ls` as a table: default first, as the manager lists them. */
export function networksTable(views: NetworkView[]): string {
  return table(['NAME', 'SUBNET', 'VNI', 'CONTAINERS', 'CREATED'], views.map((n) => [
    n.default ? `${n.name} (cluster)` : n.name, n.subnet, String(n.vni), String(n.containers.length), n.createdAt ? age(n.createdAt) : '-',
  ]));
}

function describe(n: NetworkView): string {
  const rows: [string, string][] = [
    ['Name', n.default ? `${n.name} (the cluster network)` : n.name], ['Subnet', n.subnet], ['Gateway', n.gateway], ['VNI', String(n.vni)],
    ['Labels', Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(', ') || '-'],
    ['Created', n.createdAt ? `${n.createdAt} (${age(n.createdAt)})` : '-'],
    ['Containers', n.containers.join(', ') || '-'],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${`${k}:`.padEnd(w + 2)}${v}`).join('\n');
}

/** Registers `ferry network …`. */
export function networkCommands(program: Command, ctx: Ctx): void {
  const network = program.command('network').description('manage networks: containers on different networks cannot reach each other');

  network.command('create').description('create a network (needs a cluster network)').argument('<name>')
    .option('--subnet <cidr>', 'its subnet, /16 to /28 (default: the next free /24 in 10.217.0.0/16)')
    .option('--vni <n>', 'its VXLAN network id (default: the cluster vni + 1, + 2, … first free)')
    .option('--label <k=v>', 'label the network (repeatable)', collect)
    .action(async (name: string, o: { subnet?: string; vni?: string; label?: string[] }) => {
      const n = await ctx.client().networks.create(createInput(name, o));
      if (ctx.format() === 'json') printJson(n);
      else process.stdout.write(`${n.name} ${n.subnet} vni ${n.vni}\n`);
    });

  network.command('ls').description('list networks: default (the cluster network) first').action(async () => {
    const views = await ctx.client().networks.list();
    if (ctx.format() === 'json') printJson(views);
    else process.stdout.write(`${networksTable(views)}\n`);
  });

  network.command('inspect').description('show a network and the containers on it').argument('<name>').action(async (name: string) => {
    const n = await ctx.client().networks.get(name);
    if (ctx.format() === 'json') printJson(n);
    else process.stdout.write(`${describe(n)}\n`);
  });

  network.command('rm').description('remove networks no container is on').argument('<names...>').action(async (names: string[]) => {
    for (const n of names) await ctx.client().networks.remove(n);
    if (ctx.format() === 'json') printJson({ removed: names });
    else for (const n of names) process.stdout.write(`${n}\n`);
  });
}
