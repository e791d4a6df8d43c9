/** Port specs as users write them (`8080:80`, `127.0.0.1:8080:80`, `80`, `8080:80/tcp`). Pure; the CLI and API use it. */
import { isIP } from 'node:net';
import type { Port } from './container.ts';
import { modelErrors } from './errors.ts';

/** TCP services are published on the entry point at ports of this range (like NodePorts). */
export const TCP_PORT_RANGE = { first: 30000, last: 30999 } as const;

/**
 * Parses `[hostIp:]hostPort:containerPort[/tcp]` or `containerPort[/tcp]` (the same port on the host).
 * An IPv6 host address goes in brackets: `[::1]:8080:80`. Throws NET_BAD_PORT on anything else.
 */
export function parsePort(spec: string): Port {
  const bad = (reason: string): Error => modelErrors.BAD_PORT({ value: spec, hint: reason });
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

  let hostIp = '0.0.0.0';
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

  const containerPort = portNumber(parts[parts.length - 1] as string, 'container', bad);
  const hostPort = parts.length === 2 ? portNumber(parts[0] as string, 'host', bad) : containerPort;
  return { hostIp, hostPort, containerPort, protocol: 'tcp' };
}

function portNumber(text: string, which: 'host' | 'container', bad: (reason: string) => Error): number {
  if (text === '') throw bad(`${which} port is missing`);
  if (/^\d+-\d+$/.test(text)) throw bad(`${which} port ranges are not supported`);
  if (!/^\d+$/.test(text)) throw bad(`${which} port "${text}" is not a number`);
  const port = Number(text);
  if (port < 1 || port > 65535) throw bad(`${which} port ${text} is outside 1-65535`);
  return port;
}

