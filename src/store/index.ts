/**
 * The store: Ferry's revisioned key-value state with watches and leases (see types.ts). Open one with
 * `openStore(url)`; the URL scheme picks the backend, as kine does.
 */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Store } from './types.ts';
import type { StoreOptions } from './options.ts';
import { storeErrors } from './errors.ts';
import { MemoryStore } from './memory.ts';
import { SqliteStore } from './sqlite.ts';

export type { KeyValue, Lease, ListResult, PutOptions, Store, WatchEvent, WatchOptions } from './types.ts';
export type { StoreOptions } from './options.ts';
export { storeErrors } from './errors.ts';
export { runStoreConformance } from './conformance.ts';
export { mutate, put, remove } from './mutate.ts';

/**
 * Opens a store: `memory:` (a fresh one per call), `sqlite:/path/to/file.db` or `sqlite:///path`
 * (parent directories are created; relative paths resolve against the working directory). `etcd:` is
 * not supported yet. Throws FERRY_ERR_STORE_BAD_URL for anything else.
 */
export async function openStore(url: string, options: StoreOptions = {}): Promise<Store> {
  const bad = (reason: string) => storeErrors.STORE_BAD_URL({ url, reason });
  if (typeof url !== 'string') throw bad('a store URL is a string such as sqlite:/var/lib/ferry/state.db');
  const colon = url.indexOf(':');
  const scheme = colon > 0 ? url.slice(0, colon).toLowerCase() : '';
  const rest = url.slice(colon + 1);
  switch (scheme) {
    case 'memory':
      if (rest !== '' && rest !== '//') throw bad('memory: takes no path');
      return new MemoryStore(options);
    case 'sqlite': {
      const path = sqlitePath(rest, bad);
      try {
        if (path !== ':memory:') await mkdir(dirname(path), { recursive: true });
        return new SqliteStore(path, options);
      } catch (e) {
        const reason = `cannot open the database: ${e instanceof Error ? e.message : String(e)}`;
        throw storeErrors.STORE_UNAVAILABLE({ backend: 'sqlite', location: path, reason }, e);
      }
    }
    case 'etcd':
      throw bad('the etcd backend is not yet supported; use sqlite: for now');
    default:
      throw bad('use memory:, sqlite:/path/to/file.db (or etcd:, not yet supported)');
  }
}

/** The file path of a `sqlite:` URL's remainder; `//host/...` forms other than `///path` are refused. */
function sqlitePath(rest: string, bad: (reason: string) => Error): string {
  let path = rest;
  if (rest.startsWith('//')) {
    const slash = rest.indexOf('/', 2);
    const host = slash < 0 ? rest.slice(2) : rest.slice(2, slash);
    if (host !== '' && host !== 'localhost') throw bad(`"${host}" reads as a host; write sqlite:/abs/path or sqlite:///abs/path`);
    path = slash < 0 ? '' : rest.slice(slash);
    try {
      path = decodeURIComponent(path);
    } catch {
      throw bad('the path is not valid percent-encoding');
    }
  }
  if (path === '') throw bad('no file path given; write sqlite:/path/to/file.db');
  if (path.includes('?') || path.includes('#')) throw bad('query strings and fragments are not supported');
  return path;
}
