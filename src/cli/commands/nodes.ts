/** Node verbs: node ls, node inspect. */
import type { Command } from 'commander';
import { formatBytes } from '../../model/index.ts';
import { table, printJson, age } from '../output.ts';
import type { Ctx } from './containers.ts';

/** Registers `ferry node …`. */
export function nodeCommands(program: Command, ctx: Ctx): void {
  const node = program.command('node').description('inspect the hosts of the cluster');
  node.command('ls').description('list nodes').action(async () => {
    const nodes = await ctx.client().nodes.list();
    if (ctx.format() === 'json') return printJson(nodes);
    process.stdout.write(`${table(['NAME', 'STATE', 'ADDRESS', 'CPUS', 'MEMORY', 'CONTAINERS', 'KERNEL', 'CRIU', 'AGENT STARTED'], nodes.map((n) => [
      n.node.metadata.name, n.state + (n.node.spec.unschedulable ? ',unschedulable' : ''), n.node.status.address,
      String(n.node.status.capacity.cpus), formatBytes(n.node.status.capacity.memoryBytes), String(n.containers),
      n.node.status.facts.kernel, n.node.status.facts.criu, age(n.node.status.startedAt),
    ]))}\n`);
  });
  node.command('inspect').description('show a node').argument('<name>').action(async (name: string) => {
    const n = await ctx.client().nodes.get(name);
    if (ctx.format() === 'json') return printJson(n);
    const f = n.node.status.facts;
    process.stdout.write([
      `Name:        ${n.node.metadata.name}`, `State:       ${n.state}`, `Address:     ${n.node.status.address}`,
      `Capacity:    ${n.node.status.capacity.cpus} CPUs, ${formatBytes(n.node.status.capacity.memoryBytes)}`,
      `Containers:  ${n.containers}`, `Labels:      ${Object.entries(n.node.metadata.labels).map(([k, v]) => `${k}=${v}`).join(', ') || '-'}`,
      `Kernel:      ${f.kernel} (${f.os}, ${f.arch})`, `runc:        ${f.runc}`, `CRIU:        ${f.criu}`,
      `cgroup:      v${f.cgroupVersion}`, `overlayfs:   ${f.overlay ? 'yes' : 'no'}`, `CPU:         ${f.cpuModel} (${f.cpuFlags.length} flags)`,
      `Agent:       ${n.node.status.agentVersion}, started ${n.node.status.startedAt}`,
    ].join('\n') + '\n');
  });
}
