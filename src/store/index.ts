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
import { EtcdStore } from './etcd.ts';

export type { KeyValue, Lease, ListResult, PutOptions, Store, WatchEvent, WatchOptions } from './types.ts';
export type { StoreOptions } from './options.ts';
export { storeErrors } from './errors.ts';
export { runStoreConformance } from './conformance.ts';
export { mutate, put, remove } from './mutate.ts';

/**
 * Opens a store: `memory:` (a fresh one per call), `sqlite:/path/to/file.db` or `sqlite:///path`
 * (parent directories are created; relative paths resolve against the working directory), or
 * `etcd://host:port` / `etcd://h1:p1,h2:p2,h3:p3` (an etcd cluster's client URLs, spoken to over plain
 * HTTP; requests fail over between them; throws FERRY_ERR_STORE_UNAVAILABLE when none answers).
 * Throws FERRY_ERR_STORE_BAD_URL for anything else.
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
    case 'etcd': {
      const store = new EtcdStore({ endpoints: etcdEndpoints(rest, bad) });
      // Fail at start with the reason rather than on the first write.
      await store.revision().catch(async (e: unknown) => { await store.close(); throw e; });
      return store;
    }
    default:
      throw bad('use memory:, sqlite:/path/to/file.db or etcd://host:2379[,host2:2379,…]');
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

/** The client URLs of an `etcd:` URL's remainder: `//h1:p1,h2:p2`, each host with a port, no path. */
function etcdEndpoints(rest: string, bad: (reason: string) => Error): string[] {
  if (!rest.startsWith('//')) throw bad('write etcd://host:port (comma-separate several members)');
  const hosts = rest.slice(2).replace(/\/$/, '');
  if (hosts === '') throw bad('no etcd endpoint given; write etcd://host:port');
  return hosts.split(',').map((h) => {
    let u: URL;
    try {
      u = new URL(`http://${h}`);
    } catch {
      throw bad(`"${h}" is not a host:port`);
    }
    if (u.port === '' || u.pathname !== '/' || u.search !== '' || u.hash !== '' || u.username !== '') {
      throw bad(`"${h}" should be host:port (e.g. 127.0.0.1:2379), with no path, query or credentials`);
    }
    return `http://${u.host}`;
  });
}
