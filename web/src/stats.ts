/**
 * CPU and memory history per container, from the cgroup figures the agents report
 * (GET /v1/containers/:name/stats). Kept outside the components: a container's row remounts when
 * it moves to another host, and its chart must go on where it was.
 */
import type { FerryClient } from './api.ts';

/** One container's recent figures: x in seconds, CPU in % of one core, memory in bytes (null = no figure: a gap). */
export interface StatsSeries {
  t: number[];
  cpu: (number | null)[];
  mem: (number | null)[];
  limitBytes: number;
  /** The previous counter reading, for the CPU rate. */
  last?: { at: number; cpuNs: number };
}

const KEEP = 120;
const history = new Map<string, StatsSeries>();

/** The series of `name` (empty until the first sample). */
export function seriesOf(name: string): StatsSeries {
  let s = history.get(name);
  if (!s) history.set(name, (s = { t: [], cpu: [], mem: [], limitBytes: 0 }));
  return s;
}

function push(s: StatsSeries, t: number, cpu: number | null, mem: number | null): void {
  s.t.push(t); s.cpu.push(cpu); s.mem.push(mem);
  if (s.t.length > KEEP) { s.t.shift(); s.cpu.shift(); s.mem.shift(); }
}

/** Takes one sample of every container in `names` (a failed one is a gap); forgets containers not listed. */
export async function sampleAll(client: FerryClient, names: string[]): Promise<void> {
  for (const n of [...history.keys()]) if (!names.includes(n)) history.delete(n);
  await Promise.all(names.map(async (name) => {
    const s = seriesOf(name);
    const now = Date.now() / 1000;
    try {
      const r = await client.containers.stats(name) as { time: string; cpuUsageNs: number; memoryUsageBytes: number; memoryLimitBytes: number };
      const at = Date.parse(r.time);
      // A counter that went down is a new cgroup (the container moved or restarted): no rate across it.
      const cpu = s.last && r.cpuUsageNs >= s.last.cpuNs && at > s.last.at ? ((r.cpuUsageNs - s.last.cpuNs) / ((at - s.last.at) * 1e6)) * 100 : null;
      s.last = { at, cpuNs: r.cpuUsageNs };
      s.limitBytes = r.memoryLimitBytes;
      push(s, now, cpu, r.memoryUsageBytes);
    } catch {
      s.last = undefined;
      push(s, now, null, null);
    }
  }));
}
