/**
 * bench/placement: "manager placement" — how fast the manager's real containers controller
 * (startContainersController) places a burst of new containers, with its incremental placer (one
 * kept Scheduler, listed again only when something it counted changed) against the original path
 * (`placement: 'full-scan'`: nodes, alive keys, health records and every container listed from the
 * store for each container). A memory store with N registered, alive nodes; the burst is M
 * containers created one after another; the clock runs from the first create until a watch has
 * seen every one placed. Also counted: the store lists made during the burst. Checks at the end
 * that every container was placed and no node holds more than its capacity. Progress on stderr.
 *
 *   node --import tsx bench/placement.ts [--nodes 100,1000] [--containers 2000] [--reps 1] [--seed 1] [-o json]
 */
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { openStore, type Store } from '../src/store/index.ts';
import { keys, defaultSpec, type Container, type Node } from '../src/model/index.ts';
import { startContainersController, type ContainersControllerOptions } from '../src/controllers/index.ts';
import { rng } from './scheduler/cluster.ts';
import { median } from './support/stats.ts';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '100,1000' },
    containers: { type: 'string', default: '2000' },
    reps: { type: 'string', default: '1' },
    seed: { type: 'string', default: '1' },
    o: { type: 'string', short: 'o', default: 'table' },
  },
});
const nodeCounts = values.nodes.split(',').map(Number);
const containerCount = Number(values.containers);
const reps = Number(values.reps);
const seed = Number(values.seed);
const count = (x: number, min: number): boolean => Number.isInteger(x) && x >= min;
const usage = [
  !nodeCounts.every((n) => count(n, 1)) && '--nodes takes node counts ≥ 1, comma-separated',
  !count(containerCount, 1) && '--containers takes a count ≥ 1',
  !count(reps, 1) && '--reps takes a count ≥ 1',
  !Number.isInteger(seed) && '--seed takes an integer',
  !['table', 'json'].includes(values.o) && '-o takes table or json',
].filter(Boolean);
if (usage.length > 0) {
  console.error(`bench/placement: ${usage.join('; ')}`);
  process.exit(2);
}

/** Progress on stderr, so `-o json` keeps stdout clean. */
const note = (s: string): void => { process.stderr.write(`# ${s}\n`); };

type Mode = NonNullable<ContainersControllerOptions['placement']>;
const MODES: readonly Mode[] = ['incremental', 'full-scan'];
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** One burst through one controller. */
interface Run {
  readonly mode: Mode;
  readonly nodes: number;
  readonly containers: number;
  readonly wallMs: number;
  readonly placementsPerSec: number;
  readonly cpuMs: number;
  /** Store lists during the burst, by prefix. */
  readonly lists: Record<string, number>;
}

/** The store, with its list calls counted by prefix. */
function countingLists(store: Store): { store: Store; lists: Map<string, number> } {
  const lists = new Map<string, number>();
  const proxy = new Proxy(store, {
    get(target, prop) {
      if (prop === 'list') {
        return (prefix: string, o?: { limit?: number }) => {
          lists.set(prefix, (lists.get(prefix) ?? 0) + 1);
          return target.list(prefix, o);
        };
      }
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { store: proxy, lists };
}

function nodeOf(name: string, zone: string): Node {
  return {
    apiVersion: 'ferry/v1', kind: 'Node', metadata: { name, uid: name, createdAt: '', labels: { 'ferry.io/zone': zone } }, spec: { unschedulable: false },
    status: {
      address: 'http://x', capacity: { cpus: 16, memoryBytes: 64 * GiB }, agentVersion: 'bench', startedAt: '', heartbeatAt: '',
      facts: { hostname: '', kernel: '', arch: '', os: '', runc: '', criu: '', cgroupVersion: 2, overlay: true, cpuModel: '', cpuFlags: [] },
    },
  };
}

/** The burst: a seeded mix of plain containers and replicas of 50 services, some with a workload class. */
function burst(n: number, nodes: number, r: () => number): Container[] {
  const classes = ['cpu', 'io', 'memory', 'network'];
  // Sized so that every container fits somewhere: at most half the cluster's memory and CPU.
  const memCap = Math.max(64 * MiB, Math.floor((nodes * 32 * GiB) / n / MiB) * MiB);
  return Array.from({ length: n }, (_, i): Container => {
    const service = r() < 0.6 ? `svc${Math.floor(r() * 50)}` : undefined;
    const cls = r() < 0.5 ? classes[Math.floor(r() * classes.length)] : undefined;
    const name = `c${String(i).padStart(6, '0')}`;
    return {
      apiVersion: 'ferry/v1', kind: 'Container', metadata: { name, uid: `uid-${name}`, createdAt: '', generation: 1 },
      spec: {
        ...defaultSpec('sample'),
        labels: service ? { 'ferry.io/service': service } : ({} as Record<string, string>),
        resources: { memoryBytes: Math.max(32 * MiB, Math.floor((r() * memCap) / MiB) * MiB), cpus: Math.min(8, Math.round(r() * ((nodes * 8) / n) * 100) / 100) },
        ...(cls ? { scheduling: { workloadClass: cls } } : {}),
      },
    };
  });
}

async function runOnce(mode: Mode, nodes: number, rep: number): Promise<Run> {
  const raw = await openStore('memory:');
  const { store, lists } = countingLists(raw);
  try {
    for (let i = 0; i < nodes; i++) {
      const name = `node-${String(i).padStart(5, '0')}`;
      await store.create(keys.node(name), nodeOf(name, `z${i % 3}`));
      await store.create(keys.nodeAlive(name), { node: name, since: '' });
    }
    const errors: string[] = [];
    const loop = startContainersController(store, (name, e) => errors.push(`${name}: ${(e as Error).message}`), { placement: mode });
    try {
      await loop.idle();
      const cs = burst(containerCount, nodes, rng(seed + nodes + rep));
      const ac = new AbortController();
      const from = await raw.revision();
      const placed = new Set<string>();
      const all = (async () => {
        for await (const ev of raw.watch<Container>(keys.containers, { afterRevision: from, signal: ac.signal })) {
          if (ev.type === 'put' && ev.kv.value.placement) placed.add(ev.kv.value.metadata.name);
          if (placed.size === cs.length) return performance.now();
        }
        throw new Error(`the watch ended with ${placed.size} of ${cs.length} placed`);
      })();
      lists.clear();
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      for (const c of cs) await raw.create(keys.container(c.metadata.name), c);
      const t1 = await all;
      const cpu = process.cpuUsage(cpu0);
      ac.abort();
      if (errors.length > 0) throw new Error(`controller errors: ${errors.slice(0, 3).join('; ')}`);
      await loop.idle();
      await checkCapacity(raw, nodes);
      const wallMs = t1 - t0;
      return {
        mode, nodes, containers: cs.length, wallMs, placementsPerSec: (cs.length / wallMs) * 1000,
        cpuMs: (cpu.user + cpu.system) / 1000, lists: Object.fromEntries(lists),
      };
    } finally {
      await loop.stop();
    }
  } finally {
    await raw.close();
  }
}

/** Fails the run when a container is unplaced or a node holds more than its capacity. */
async function checkCapacity(store: Store, nodes: number): Promise<void> {
  const used = new Map<string, { cpus: number; mem: number }>();
  for (const { value: c } of (await store.list<Container>(keys.containers)).items) {
    if (!c.placement) throw new Error(`${c.metadata.name} was not placed`);
    const u = used.get(c.placement.node) ?? { cpus: 0, mem: 0 };
    u.cpus += c.spec.resources.cpus ?? 0;
    u.mem += c.spec.resources.memoryBytes ?? 0;
    used.set(c.placement.node, u);
  }
  for (const [n, u] of used) if (u.cpus > 16 + 1e-9 || u.mem > 64 * GiB) throw new Error(`node ${n} is over capacity: ${u.cpus} CPUs, ${u.mem} B`);
  if (used.size > nodes) throw new Error('placed on a node that does not exist');
}

const runs: Run[] = [];
const loadAtStart = loadavg()[0]!;
for (const n of nodeCounts) {
  for (let rep = 0; rep < reps; rep++) {
    for (const mode of MODES) {
      note(`${n} nodes, ${mode}, rep ${rep + 1}/${reps}: ${containerCount} containers`);
      const r = await runOnce(mode, n, rep);
      note(`${n} nodes, ${mode}: ${r.placementsPerSec.toFixed(0)} placements/s (${(r.wallMs / 1000).toFixed(2)} s), lists of containers ${r.lists[keys.containers] ?? 0}`);
      runs.push(r);
    }
  }
}
const summary = nodeCounts.map((n) => {
  const rate = (m: Mode): number => median(runs.filter((r) => r.nodes === n && r.mode === m).map((r) => r.placementsPerSec)) ?? 0;
  return { nodes: n, incremental: rate('incremental'), fullScan: rate('full-scan'), ratio: rate('incremental') / rate('full-scan') };
});
const cpuList = cpus();
const machine = { cores: cpuList.length, cpu: cpuList[0]?.model.trim() ?? 'unknown CPU', node: process.version, loadavgAtStart: loadAtStart, loadavgAtEnd: loadavg()[0]! };
if (values.o === 'json') {
  console.log(JSON.stringify({ machine, containers: containerCount, reps, seed, summary, runs }, null, 2));
} else {
  const lines = [
    `bench/placement — manager placement: ${containerCount} containers created in a memory store, placed by startContainersController`,
    `machine: ${machine.cores} cores, ${machine.cpu}, Node ${machine.node}, load average ${machine.loadavgAtStart.toFixed(2)} → ${machine.loadavgAtEnd.toFixed(2)}`,
    '',
    'nodes   mode          wall s   placements/s   CPU s   lists of containers   lists of nodes',
    ...runs.map((r) => `${String(r.nodes).padEnd(7)} ${r.mode.padEnd(13)} ${(r.wallMs / 1000).toFixed(2).padStart(6)}   ${r.placementsPerSec.toFixed(0).padStart(12)}   ${(r.cpuMs / 1000).toFixed(2).padStart(5)}   ${String(r.lists[keys.containers] ?? 0).padStart(19)}   ${String(r.lists[keys.nodes] ?? 0).padStart(14)}`),
    '',
    ...summary.map((s) => `${s.nodes} nodes: incremental ${s.incremental.toFixed(0)} placements/s vs full-scan ${s.fullScan.toFixed(0)}/s — ×${s.ratio.toFixed(1)}${reps > 1 ? ` (medians of ${reps})` : ''}`),
  ];
  console.log(lines.join('\n'));
}
