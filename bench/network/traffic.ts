/**
 * Throughput and round trips over one path — a client in one network namespace, tcp-tool.mjs's
 * server in another — and the MTU a path's first hop has. The same tool, the same Node, the same
 * flags on every path; only the namespaces differ.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { NetnsProcess } from './netns-process.ts';

const TOOL = fileURLToPath(new URL('./tcp-tool.mjs', import.meta.url));

/** Where traffic goes: the client's namespace, the server's, and the address the client dials. */
export interface Path {
  readonly clientNetns: string;
  readonly serverNetns: string;
  readonly serverIp: string;
  readonly port: number;
}

/** One stream: what the receiver counted, over how long (first byte → end of stream). */
export interface StreamRun {
  bytes: number;
  ms: number;
  bitsPerSec: number;
}

/** Round trips of one ping-pong run, in µs. */
export interface RttRun {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  min: number;
  max: number;
  mean: number;
}

/** Starts the tool's server in `netnsPath` on `port` and waits until it listens. */
export async function startServer(netnsPath: string, port: number): Promise<NetnsProcess> {
  const p = new NetnsProcess(netnsPath, [process.execPath, TOOL, 'serve', String(port)]);
  await p.until(`the server in ${netnsPath}`, () => (p.lines.some((l) => l.includes('"listening"')) ? true : undefined), 10_000);
  return p;
}

/** One bulk stream over `path` for `seconds`. */
export function streamOnce(path: Path, seconds: number): Promise<StreamRun> {
  const p = new NetnsProcess(path.clientNetns, [process.execPath, TOOL, 'stream', path.serverIp, String(path.port), String(seconds)]);
  return p.result<StreamRun>(seconds * 1000 + 30_000);
}

/** One ping-pong run of `size`-byte messages over `path` for `seconds` (after a warm-up). */
export function pingPongOnce(path: Path, seconds: number, size: number): Promise<RttRun> {
  const p = new NetnsProcess(path.clientNetns, [process.execPath, TOOL, 'pingpong', path.serverIp, String(path.port), String(seconds), String(size)]);
  return p.result<RttRun>(seconds * 1000 + 30_000);
}

/** The interface and MTU a packet from `netnsPath` to `dst` leaves by; undefined when `ip` cannot tell. */
export function firstHop(netnsPath: string, dst: string): { dev: string; mtu: number } | undefined {
  try {
    const ip = (args: string[]): unknown => JSON.parse(execFileSync('nsenter', [`--net=${netnsPath}`, '--', 'ip', '-j', ...args], { encoding: 'utf8' }));
    const dev = (ip(['route', 'get', dst]) as { dev?: string }[])[0]?.dev;
    if (!dev) return undefined;
    const mtu = (ip(['link', 'show', 'dev', dev]) as { mtu?: number }[])[0]?.mtu;
    return mtu === undefined ? undefined : { dev, mtu };
  } catch {
    return undefined;
  }
}
