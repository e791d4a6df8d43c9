/** Where the CLI finds the manager: flags, then FERRY_API/FERRY_TOKEN, then the ferry.json `ferry up` wrote. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { requestJson, type Endpoint } from '../client/index.ts';
import { FerryError, isFerryError } from '../errors/index.ts';

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

/** The URLs of a manager URL list (`http://a:7670,http://b:7670`), each checked and without a trailing slash. */
export function managerUrls(list: string, flag: string): string[] {
  const urls = list.split(',').map((u) => u.trim()).filter((u) => u !== '');
  if (urls.length === 0) throw new FerryError('FERRY_ERR_BAD_FLAG', 400, `${flag} needs the manager's API URL, like http://manager:7670, not "${list}"`);
  return urls.map((u) => {
    try {
      return new URL(u).href.replace(/\/$/, '');
    } catch {
      throw new FerryError('FERRY_ERR_BAD_FLAG', 400, `${flag} needs manager API URLs (several separated by commas), like http://manager:7670, not "${u}"`);
    }
  });
}

/**
 * The URL of the leading manager of an endpoint: a single URL as it is; among several, the one
 * GET /v1/manager/leader says leads (asked of each in turn), else the first that answers at all (a
 * manager without an election answers 404 there and is the only one).
 */
export async function leaderUrl(ep: Endpoint): Promise<string> {
  const urls = managerUrls(ep.url, 'the API URL');
  if (urls.length === 1) return urls[0]!;
  let answered: string | undefined;
  const failures: string[] = [];
  for (const url of urls) {
    try {
      const s = await requestJson<{ role?: string; leader?: { url?: string } | null }>({ url, ...(ep.token ? { token: ep.token } : {}) }, 'GET', 'v1/manager/leader', { signal: AbortSignal.timeout(3000) });
      if (s.role === 'leader') return url;
      if (s.leader?.url) return s.leader.url;
      answered ??= url;
    } catch (e) {
      // Any HTTP answer means a manager is there; only an unreachable one is skipped.
      if (isFerryError(e) && e.code !== 'FERRY_ERR_UNREACHABLE') answered ??= url;
      else failures.push((e as Error).message);
    }
  }
  if (answered !== undefined) return answered;
  throw new FerryError('FERRY_ERR_UNREACHABLE', 503, `none of the managers answered: ${failures.join('; ')}`, { urls });
}
