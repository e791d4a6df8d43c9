/**
 * bench/network: the cluster network of `ferry up --nodes 2` (two simulated hosts, containers joined
 * by VXLAN over the underlay bridge) against the underlay itself, in the same run. Throughput (one
 * TCP stream) and round trips (small ping-pong, one in flight) container↔container across the hosts
 * vs host↔host between the hosts' namespaces, with ratios; then restore → first packet: a client
 * holding one TCP connection to a container's line echo, and fresh connections beside it, while the
 * container moves stop-copy back and forth. Prints a table and the raw figures; `-o json` prints all of it as JSON. Progress on stderr.
 *
 *   node --import tsx bench/network.ts [--seconds 5] [--reps 3] [--size 64] [-o json]
 */
import { cpus, release } from 'node:os';
import { parseArgs } from 'node:util';
import { running, startCluster, teardownCluster, type BenchCluster, type ClusterTrace } from './network/cluster.ts';
import { measureFirstPacket } from './network/first-packet.ts';
import { stopAll } from './network/netns-process.ts';
import { onInterrupt } from './support/interrupt.ts';
import { renderText, summarize, type NetworkResult, type Series } from './network/report.ts';
import { firstHop, pingPongOnce, startServer, streamOnce, type Path } from './network/traffic.ts';

const PORT = 5201;
const ECHO_PORT = 7000;

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    reps: { type: 'string', default: '3' },
    size: { type: 'string', default: '64' },
    o: { type: 'string', short: 'o', default: 'table' },
  },
});
const seconds = Number(values.seconds);
const reps = Number(values.reps);
const size = Number(values.size);
const usage = [
  !(seconds > 0 && seconds <= 600) && '--seconds takes a duration per run, 0 < s ≤ 600',
  (!Number.isInteger(reps) || reps < 1) && '--reps takes a count ≥ 1',
  (!Number.isInteger(size) || size < 1 || size > 65536) && '--size takes a message size in bytes, 1..65536',
  !['table', 'json'].includes(values.o) && '-o takes table or json',
].filter(Boolean);
if (usage.length > 0) {
  console.error(`bench/network: ${usage.join('; ')}`);
  process.exit(2);
}

/** Progress on stderr, so `-o json` keeps stdout clean. */
const note = (s: string): void => { process.stderr.write(`# ${s}\n`); };
const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

const trace: ClusterTrace = {};
const interrupt = onInterrupt(note, stopAll);
/** Throws once a signal asked the run to stop, so it goes straight to the teardown. */
const checkpoint = (): void => interrupt.checkpoint();

/** Runs `fn`, adding its result to `s`, or its error message. */
async function measure<T>(s: Series<T>, label: string, fn: () => Promise<T>, show: (r: T) => string): Promise<void> {
  checkpoint();
  try {
    const r = await fn();
    s.runs.push(r);
    note(`${label}: ${show(r)}`);
  } catch (e) {
    s.errors.push(message(e));
    note(`${label}: FAILED ${message(e)}`);
  }
}

/** Starts the sample app as `name` on `node` and waits until it runs with an address. */
async function sample(c: BenchCluster, name: string, node: string): Promise<{ ip: string; pid: number }> {
  await c.ok(['run', '--name', name, '--node', node, 'sample']);
  const v = await running(c, name);
  return { ip: v.status.ip, pid: v.status.pid };
}

const cpuList = cpus();
const result: NetworkResult = {
  machine: { cores: cpuList.length, cpu: cpuList[0]?.model.trim() ?? 'unknown CPU', kernel: release(), node: process.version },
  seconds, reps, messageBytes: size, paths: {},
  throughput: { host: { runs: [], errors: [] }, container: { runs: [], errors: [] } },
  latency: { host: { runs: [], errors: [] }, container: { runs: [], errors: [] } },
  firstPacket: { moves: [], errors: [] },
};
let failure: string | undefined;
let left: string[];
try {
  note('ferry up --nodes 2');
  const c = await startCluster(2, trace);
  checkpoint();
  const [h1, h2] = c.nodes as [typeof c.nodes[0], typeof c.nodes[0]];
  result.underlay = `${c.simulation.subnet} on ${c.simulation.bridge}`;
  const a = await sample(c, 'net-a', h1.name);
  const b = await sample(c, 'net-b', h2.name);
  checkpoint();
  const paths: Record<'host' | 'container', Path> = {
    host: { clientNetns: `/run/netns/${h1.netns}`, serverNetns: `/run/netns/${h2.netns}`, serverIp: h2.underlayIp, port: PORT },
    container: { clientNetns: `/proc/${a.pid}/ns/net`, serverNetns: `/proc/${b.pid}/ns/net`, serverIp: b.ip, port: PORT },
  };
  result.paths = {
    host: { from: `${h1.netns} ${h1.underlayIp}`, to: `${h2.netns} ${h2.underlayIp}`, ...firstHop(paths.host.clientNetns, h2.underlayIp) },
    container: { from: `net-a ${a.ip} on ${h1.name}`, to: `net-b ${b.ip} on ${h2.name}`, ...firstHop(paths.container.clientNetns, b.ip) },
  };
  const servers = [await startServer(paths.host.serverNetns, PORT), await startServer(paths.container.serverNetns, PORT)];
  const kinds = ['host', 'container'] as const;
  // Warm-up, unrecorded: neighbour and forwarding entries, the JIT, TCP's first window growth.
  for (const k of kinds) {
    await streamOnce(paths[k], 1);
    await pingPongOnce(paths[k], 0.5, size);
  }
  for (let rep = 0; rep < reps; rep++) {
    for (const k of kinds) {
      await measure(result.throughput[k], `throughput ${k} rep ${rep + 1}`, () => streamOnce(paths[k], seconds), (r) => `${(r.bitsPerSec / 1e9).toFixed(2)} Gbit/s`);
    }
  }
  for (let rep = 0; rep < reps; rep++) {
    for (const k of kinds) {
      await measure(result.latency[k], `RTT ${k} rep ${rep + 1}`, () => pingPongOnce(paths[k], seconds, size), (r) => `p50 ${r.p50.toFixed(0)} µs, p99 ${r.p99.toFixed(0)} µs (${r.count} round trips)`);
    }
  }
  checkpoint();
  for (const s of servers) await s.stop();
  await c.ok(['rm', '-f', 'net-a', 'net-b']);
  checkpoint();
  result.firstPacket = await measureFirstPacket(c, h1, h2, reps, ECHO_PORT, note);
} catch (e) {
  failure = e instanceof Error ? (e.stack ?? e.message) : String(e);
} finally {
  note('ferry down');
  await stopAll();
  left = await teardownCluster(trace);
  if (left.length > 0) console.error(`cleanup found leftovers: ${left.join('; ')}`);
}
const summary = summarize(result);
if (failure) {
  console.error(`bench/network stopped: ${failure}`);
  process.exitCode = interrupt.signal() ? 130 : 1;
}
if (values.o === 'json') console.log(JSON.stringify({ ...result, summary, ...(failure ? { failure } : {}), leftovers: left }, null, 2));
else console.log(renderText(result, summary, failure?.split('\n')[0]));
