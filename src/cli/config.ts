/** Where the CLI finds the manager: flags, then FERRY_API/FERRY_TOKEN, then the ferry.json `ferry up` wrote. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Endpoint } from '../client/index.ts';
import { FerryError } from '../errors/index.ts';

/** Default home of a single-machine Ferry (state, logs, data). */
export const DEFAULT_HOME = '/var/lib/ferry';

/** The home directory in use. */
export function ferryHome(flag?: string): string {
  return flag ?? process.env.FERRY_HOME ?? DEFAULT_HOME;
}

/** What `ferry up` leaves for the CLI. */
export interface ClientConfig {
  api: string;
  token: string;
}

/** The file holding the client config. */
export function configFile(home: string): string {
  return join(home, 'ferry.json');
}

/** Resolves the manager endpoint or explains how to get one. */
export function resolveEndpoint(o: { api?: string; token?: string; home?: string }): Endpoint {
  let file: ClientConfig | undefined;
  const home = ferryHome(o.home);
  try {
    file = JSON.parse(readFileSync(configFile(home), 'utf8')) as ClientConfig;
  } catch { /* not set up */ }
  const url = o.api || process.env.FERRY_API || file?.api;
  const token = o.token || process.env.FERRY_TOKEN || file?.token;
  if (!url) {
    throw new FerryError('FERRY_ERR_UNREACHABLE', 503, `Ferry is not running here (no ${configFile(home)}); start it with \`ferry up\`, or set FERRY_API and FERRY_TOKEN`);
  }
  return { url, token };
}
