/** `ferry lb`: the entry point daemon — HAProxy steered by the cluster's services (`ferry up` starts one). */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { isIP } from 'node:net';
import { FerryClient } from '../../client/index.ts';
import { checkName, TCP_PORT_RANGE } from '../../model/text.ts';
import { needToken, onShutdown, stamp, type RunFile } from '../daemons.ts';
import { simErrors } from '../simulation.ts';
import { ferryHome } from '../config.ts';
import { homePaths } from '../paths.ts';

function bad(flag: string, reason: string): Error {
  return simErrors.BAD_FLAG({ flag, reason });
}

/** Parses `ADDR:PORT`. */
export function parseHttpListen(v: string): { address: string; port: number } {
  const i = v.lastIndexOf(':');
  const address = v.slice(0, i);
  const port = Number(v.slice(i + 1));
  if (i < 1 || isIP(address) !== 4 || !Number.isInteger(port) || port < 1 || port > 65535) throw bad('--http', `takes IPv4:PORT such as 127.0.0.1:8080, not "${v}"`);
  return { address, port };
}

/** Parses `ADDR:FIRST-LAST` (inside the range services may ask for). */
export function parseTcpListen(v: string): { address: string; first: number; last: number } {
  const m = /^(.+):(\d+)-(\d+)$/.exec(v);
  const first = Number(m?.[2]);
  const last = Number(m?.[3]);
  if (!m || isIP(m[1]!) !== 4 || first > last || first < TCP_PORT_RANGE.first || last > TCP_PORT_RANGE.last) {
    throw bad('--tcp', `takes IPv4:FIRST-LAST inside ${TCP_PORT_RANGE.first}-${TCP_PORT_RANGE.last} (the ports services ask for), such as 127.0.0.1:${TCP_PORT_RANGE.first}-${TCP_PORT_RANGE.last}, not "${v}"`);
  }
  return { address: m[1]!, first, last };
}

/** The HTTP address the manager is told by default: the listener's own, or loopback for a wildcard (the manager is then assumed on this machine). */
export function advertisedHttp(http: { address: string; port: number }): string {
  return `http://${http.address === '0.0.0.0' ? '127.0.0.1' : http.address}:${http.port}`;
}

/** Registers `ferry lb`. */
export function lbCommands(program: Command, globals: () => { home?: string }): void {
  program.command('lb').description('run the entry point in the foreground: HAProxy routing to services (`ferry up` starts one)')
    .requiredOption('--manager <url>', 'manager API URL (with the cluster token in FERRY_TOKEN)')
    .option('--name <name>', 'entry point name', 'lb')
    .option('--http <addr:port>', 'HTTP listener', '127.0.0.1:8080')
    .option('--tcp <addr:first-last>', 'TCP listeners, one per port', `127.0.0.1:${TCP_PORT_RANGE.first}-${TCP_PORT_RANGE.last}`)
    .option('--state-dir <dir>', 'HAProxy config, maps and sockets (default <home>/lb/<name>)')
    .option('--check-ms <ms>', 'health check interval', '1000')
    .option('--advertise-http <url>', 'where the manager reaches the HTTP listener (default http://ADDR:PORT of --http; 127.0.0.1 for 0.0.0.0)')
    .action(async (o: { manager: string; name: string; http: string; tcp: string; stateDir?: string; checkMs: string; advertiseHttp?: string }) => {
      const home = ferryHome(globals().home);
      const p = homePaths(home);
      const name = checkName(o.name);
      const http = parseHttpListen(o.http);
      const tcp = parseTcpListen(o.tcp);
      const interMs = Number(o.checkMs);
      if (!Number.isInteger(interMs) || interMs < 100) throw bad('--check-ms', `takes milliseconds ≥ 100, not "${o.checkMs}"`);
      const httpUrl = o.advertiseHttp ?? advertisedHttp(http);
      if (!/^http:\/\/[^/]+$/.test(httpUrl)) throw bad('--advertise-http', `takes http://HOST:PORT, not "${httpUrl}"`);
      const client = new FerryClient({ url: o.manager, token: needToken() });
      const { Lb, startEntryPoint } = await import('../../lb/index.ts');
      const lb = await Lb.start({
        stateDir: o.stateDir ?? join(home, 'lb', name), http, tcp, check: { interMs, fall: 2, rise: 1, timeoutMs: Math.min(2000, interMs) },
        timeouts: { connectMs: 2000, clientMs: 60_000, serverMs: 60_000 },
        onEvent: (e) => { if (e.type !== 'applied' || e.commands > 0) stamp(`lb ${JSON.stringify(e)}`); },
      });
      const ep = startEntryPoint({ client, name, lb, log: stamp, httpUrl });
      await mkdir(p.run, { recursive: true });
      const run: RunFile = { pid: process.pid, url: `http://${http.address}:${http.port}`, role: 'lb', name };
      await writeFile(p.lbRun(name), JSON.stringify(run));
      stamp(`entry point ${name} listening on http://${http.address}:${http.port} and tcp ${tcp.address}:${tcp.first}-${tcp.last} (HAProxy pid ${lb.pid})`);
      await onShutdown(async () => {
        stamp('entry point stopping');
        await ep.stop().finally(() => lb.stop()).finally(() => rm(p.lbRun(name), { force: true }));
      });
    });
}
