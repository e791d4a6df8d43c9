/**
 * Watches of the etcd backend over the gateway's streaming `/v3/watch`: one long POST whose answer is
 * one JSON object per line. A stream that breaks (member down) is reopened on the next endpoint from
 * the last revision delivered, so consumers see no gap; a compacted start ends in STORE_COMPACTED.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { KeyValue, WatchEvent } from './types.ts';
import type { EtcdEndpoints, RawHeader, RawKv } from './etcd-http.ts';
import { storeErrors } from './errors.ts';
import { b64, int, rangeEnd } from './etcd-http.ts';

/** One message of the watch stream. */
interface RawWatchMessage {
  readonly result?: {
    readonly header?: RawHeader;
    readonly created?: boolean;
    readonly canceled?: boolean;
    readonly cancel_reason?: string;
    readonly compact_revision?: string;
    readonly events?: { readonly type?: 'PUT' | 'DELETE'; readonly kv: RawKv; readonly prev_kv?: RawKv }[];
  };
  readonly error?: { readonly message?: string; readonly grpc_code?: number };
}

/** What a watch needs from its store. */
export interface EtcdWatchContext {
  readonly endpoints: EtcdEndpoints;
  /** The store's key prefix (added to the watched prefix, stripped from keys). */
  readonly keyPrefix: string;
  /** Decodes a raw pair into a KeyValue with the store's prefix stripped. */
  decode<T>(raw: RawKv): KeyValue<T>;
}

/** How long a broken watch keeps trying to reopen before it fails with STORE_UNAVAILABLE. */
const RECONNECT_MS = 15_000;

/** Splits a byte stream into one parsed JSON object per line. */
async function* lines(body: ReadableStream<Uint8Array>): AsyncGenerator<RawWatchMessage> {
  const decoder = new TextDecoder();
  let buf = '';
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line) yield JSON.parse(line) as RawWatchMessage;
    }
  }
}

/** Turns one etcd event into a WatchEvent; a delete carries the deleted key as it was, as every backend does. */
function toEvent<T>(ctx: EtcdWatchContext, e: NonNullable<NonNullable<RawWatchMessage['result']>['events']>[number]): WatchEvent<T> {
  const revision = int(e.kv.mod_revision);
  const prevKv = e.prev_kv ? ctx.decode<T>(e.prev_kv) : undefined;
  if (e.type === 'DELETE') {
    const kv: KeyValue<T> = prevKv
      ? { ...prevKv, modRevision: revision }
      : { key: ctx.decode<T>({ key: e.kv.key }).key, value: null as T, createRevision: 0, modRevision: revision, version: 0, lease: 0 };
    return prevKv ? { type: 'delete', revision, kv, prevKv } : { type: 'delete', revision, kv };
  }
  const kv = ctx.decode<T>(e.kv);
  return prevKv ? { type: 'put', revision, kv, prevKv } : { type: 'put', revision, kv };
}

/**
 * Streams events under `prefix` with revision > `after` (awaited first: a watch "from now" learns its
 * revision in the background) until `stop` aborts. Asks etcd from `after` itself and drops that
 * revision, so a start at the compacted revision fails like the other backends (history there is partial).
 */
export async function* watchEtcd<T>(ctx: EtcdWatchContext, prefix: string, after: Promise<number>, stop: AbortSignal): AsyncGenerator<WatchEvent<T>> {
  let cursor = await after;
  const full = ctx.keyPrefix + prefix;
  let brokenSince = 0;
  while (!stop.aborted) {
    const url = ctx.endpoints.active;
    const request = { create_request: { key: b64(full === '' ? '\0' : full), range_end: rangeEnd(full), start_revision: String(Math.max(cursor, 1)), prev_kv: true } };
    try {
      const res = await fetch(`${url}/v3/watch`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(request), signal: stop });
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      for await (const msg of lines(res.body)) {
        if (msg.error) throw new Error(msg.error.message ?? 'watch stream error');
        const r = msg.result;
        if (!r) continue;
        brokenSince = 0;
        if (r.canceled) {
          if (r.compact_revision !== undefined) {
            throw storeErrors.STORE_COMPACTED({ revision: cursor, compactRevision: int(r.compact_revision) });
          }
          throw ctx.endpoints.unavailable(`etcd cancelled the watch of "${prefix}": ${r.cancel_reason ?? 'no reason given'}`);
        }
        // One revision may delete several keys (a lease's), so the cursor moves per message, not per event.
        const from = cursor;
        for (const e of r.events ?? []) {
          const event = toEvent<T>(ctx, e);
          if (event.revision <= from) continue;
          cursor = Math.max(cursor, event.revision);
          yield event;
          if (stop.aborted) return;
        }
      }
      throw new Error('the stream ended');
    } catch (e) {
      if (stop.aborted) return;
      if ((e as { code?: string }).code?.startsWith('FERRY_ERR_')) throw e;
      // The member went away or the stream broke: reopen elsewhere from the cursor, for a while.
      const lastReason = `${url}: ${(e as Error & { cause?: { code?: string } }).cause?.code ?? (e as Error).message}`;
      ctx.endpoints.advance(url);
      if (brokenSince === 0) brokenSince = Date.now();
      if (Date.now() - brokenSince > RECONNECT_MS) throw ctx.endpoints.unavailable(`the watch of "${prefix}" broke and could not be reopened (last: ${lastReason})`, e);
      await sleep(200, undefined, { signal: stop }).catch(() => undefined);
    }
  }
}
