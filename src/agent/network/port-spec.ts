/**
 * Port specs as users write them (`8080:80`, `127.0.0.1:8080:80`, `80`, `8080:80/tcp`) and the checks
 * every PortMapping must pass. Pure, no I/O: the CLI and the API call it too.
 */
import { isIP } from 'node:net';
import { netErrors } from './errors.ts';
import type { PortMapping } from './types.ts';

/** Host address a spec without one binds to. */
export const DEFAULT_HOST_IP = '0.0.0.0';

/**
 * Parses `[hostIp:]hostPort:containerPort[/tcp]` or `containerPort[/tcp]` (the same port on the host).
 * An IPv6 host address goes in brackets: `[::1]:8080:80`. Throws NET_BAD_PORT on anything else.
 */
export function parsePortSpec(spec: string): PortMapping {
  const bad = (reason: string) => netErrors.NET_BAD_PORT({ spec, reason });
  const text = spec.trim();
  if (text === '') throw bad('empty');

  let body = text;
  const slash = text.lastIndexOf('/');
  if (slash >= 0) {
    const protocol = text.slice(slash + 1).toLowerCase();
    body = text.slice(0, slash);
    if (protocol === 'udp' || protocol === 'sctp') throw bad(`${protocol} is not supported yet (tcp only)`);
    if (protocol !== 'tcp') throw bad(`unknown protocol "${protocol}" (tcp only)`);
  }

  let hostIp = DEFAULT_HOST_IP;
  const bracket = /^\[([^\]]*)\]:(.*)$/.exec(body);
  if (bracket) {
    hostIp = bracket[1] as string;
    body = bracket[2] as string;
    if (isIP(hostIp) !== 6) throw bad(`"${hostIp}" in brackets is not an IPv6 address`);
  }
  const parts = body.split(':');
  if (!bracket && parts.length === 3) hostIp = parts.shift() as string;
  if (parts.length > 2 || (bracket && parts.length !== 2)) throw bad('expected [hostIp:]hostPort:containerPort or containerPort');
  if (!bracket && isIP(hostIp) !== 4) throw bad(`"${hostIp}" is not an IPv4 address (put IPv6 in brackets)`);

  const containerPort = parsePort(parts[parts.length - 1] as string, 'container', bad);
  const hostPort = parts.length === 2 ? parsePort(parts[0] as string, 'host', bad) : containerPort;
  return { hostIp, hostPort, containerPort, protocol: 'tcp' };
}

function parsePort(text: string, which: 'host' | 'container', bad: (reason: string) => Error): number {
  if (text === '') throw bad(`${which} port is missing`);
  if (/^\d+-\d+$/.test(text)) throw bad(`${which} port ranges are not supported`);
  if (!/^\d+$/.test(text)) throw bad(`${which} port "${text}" is not a number`);
  const port = Number(text);
  if (port < 1 || port > 65535) throw bad(`${which} port ${text} is outside 1-65535`);
  return port;
}

/** Throws NET_BAD_PORT unless the mapping is one `publish` can serve. */
export function checkPortMapping(m: PortMapping): void {
  const spec = formatPortMapping(m);
  const bad = (reason: string) => netErrors.NET_BAD_PORT({ spec, reason });
  if (m.protocol !== 'tcp') throw bad(`${String(m.protocol)} is not supported yet (tcp only)`);
  if (isIP(m.hostIp) === 0) throw bad(`host address "${m.hostIp}" is not an IP address`);
  for (const [which, port] of [['host', m.hostPort], ['container', m.containerPort]] as const) {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw bad(`${which} port ${port} is outside 1-65535`);
  }
}

/** The spec text of a mapping, e.g. `127.0.0.1:8080:80/tcp`. */
export function formatPortMapping(m: PortMapping): string {
  const host = isIP(m.hostIp) === 6 ? `[${m.hostIp}]` : m.hostIp;
  return `${host}:${m.hostPort}:${m.containerPort}/${m.protocol}`;
}
