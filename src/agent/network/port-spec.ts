/**
 * The checks every PortMapping must pass before it is published, and its text form. Parsing what users
 * type (`8080:80`, `127.0.0.1:8080:80`) is the model's `parsePort`.
 */
import { isIP } from 'node:net';
import { netErrors } from './errors.ts';
import type { PortMapping } from './types.ts';

/** Host address a spec without one binds to. */
export const DEFAULT_HOST_IP = '0.0.0.0';

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
