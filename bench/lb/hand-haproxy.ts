/**
 * The peer of Ferry's entry point: the HAProxy config a person would write for the same service —
 * one frontend routing the host name, one backend with the same replica addresses, roundrobin, the
 * same HTTP health check (GET /, 200–399, every second, down after 2, up after 1) and the same
 * timeouts — without Ferry's pool, maps, hold rule or runtime API. Run with `haproxy -f` in the
 * foreground (so it is stopped by its own pid) inside host 1's namespace, on another port.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NetnsProcess } from '../network/netns-process.ts';

/** One backend server: a replica's address on the cluster network. */
export interface Backend {
  readonly name: string;
  readonly ip: string;
  readonly port: number;
}

/** The hand-written configuration. */
export function renderHandConfig(o: { address: string; port: number; host: string; backends: readonly Backend[] }): string {
  return [
    '# Written by bench/lb: the hand-written peer of Ferry\'s entry point.',
    'defaults',
    '  mode http',
    '  timeout connect 2000ms',
    '  timeout client 60s',
    '  timeout server 60s',
    '  timeout http-request 10s',
    '  timeout http-keep-alive 10s',
    '  timeout check 1000ms',
    '  retries 2',
    '  option redispatch 1',
    '',
    'frontend web_in',
    `  bind ${o.address}:${o.port}`,
    '  option forwardfor',
    `  use_backend web if { hdr(host),field(1,:) -i ${o.host} }`,
    '  default_backend no_route',
    '',
    'backend web',
    '  balance roundrobin',
    '  option httpchk',
    '  http-check send meth GET uri / ver HTTP/1.1 hdr host hand-lb',
    '  http-check expect status 200-399',
    '  default-server check inter 1000ms fall 2 rise 1',
    ...o.backends.map((b) => `  server ${b.name} ${b.ip}:${b.port}`),
    '',
    'backend no_route',
    '  http-request return status 404',
    '',
  ].join('\n');
}

/** A running hand-written HAProxy. */
export interface HandHaproxy {
  readonly config: string;
  readonly process: NetnsProcess;
}

/** Writes the config into `dir`, checks it (`haproxy -c`), and starts HAProxy in the foreground in `netns`. */
export async function startHandHaproxy(dir: string, netns: string, config: string): Promise<HandHaproxy> {
  const file = join(dir, 'hand-haproxy.cfg');
  await writeFile(file, config);
  const check = new NetnsProcess(`/run/netns/${netns}`, ['haproxy', '-c', '-f', file]);
  const code = await check.exited;
  if (code !== 0) throw new Error(`haproxy -c rejected ${file}: ${check.lines.join(' | ')} ${check.errors}`);
  // -db: no daemon, so the pid we hold is HAProxy's own and SIGTERM stops it.
  const p = new NetnsProcess(`/run/netns/${netns}`, ['haproxy', '-db', '-f', file]);
  return { config, process: p };
}
