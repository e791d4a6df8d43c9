/**
 * The etcd backend: the Store contract kept by a real etcd (v3.4+) cluster, spoken to through its JSON
 * gateway (etcd-http.ts). Revisions, compare-and-swap, watches, leases and compaction are etcd's own;
 * this file only maps them onto the contract: creates are transactions on create_revision == 0,
 * updates and deletes compare mod_revision, and failures re-read the key to name the right error.
 */
import type { KeyValue, Lease, ListResult, PutOptions, Store, WatchEvent, WatchOptions } from './types.ts';
import type { RawHeader, RawKv } from './etcd-http.ts';
import { randomBytes } from 'node:crypto';
import { isFerryError } from '../errors/index.ts';
import { storeErrors } from './errors.ts';
import { checkKey, checkLimit, checkPrefix, checkRevision, checkTtl, encodeValue } from './keyspace.ts';
import { failedWatch } from './watch.ts';
import { EtcdAnswerError, EtcdCutOffError, EtcdEndpoints, GRPC_UNAVAILABLE, b64, int, rangeEnd, unb64 } from './etcd-http.ts';
import { watchEtcd } from './etcd-watch.ts';

/** How to reach etcd. */
export interface EtcdStoreOptions {
  /** Client URLs of the members, e.g. `http://127.0.0.1:2379`; tried in order, the next when one fails. */
  readonly endpoints: readonly string[];
  /**
   * Prepended to every key and stripped from every answer, so several stores can share one etcd
   * (tests give each case its own). Revisions and leases stay cluster-wide. Default none.
   */
  readonly keyPrefix?: string;
}

interface RawRange { readonly header?: RawHeader; readonly kvs?: RawKv[] }
interface RawTxn {
  readonly header?: RawHeader;
  readonly succeeded?: boolean;
  readonly responses?: {
    readonly response_put?: { readonly prev_kv?: RawKv };
    readonly response_range?: { readonly kvs?: RawKv[] };
    readonly response_delete_range?: { readonly prev_kvs?: RawKv[] };
  }[];
}

// Lease ids Ferry picks: above 2^32 (clear of small ids tests and tools use), below 2^53 (exact in JS).
const LEASE_ID_MIN = 2 ** 32;
const LEASE_ID_MAX = 2 ** 53 - 1;
/** gRPC NOT_FOUND, which etcd answers for unknown leases. */
const GRPC_NOT_FOUND = 5;
/** How long a request keeps being sent again through a leader election or a lost member before it fails. */
const WRITE_PATIENCE_MS = 20_000;

/** Whether a failed write may have been cut off by an election or a lost member (rather than refused). */
function transient(e: unknown): boolean {
  return e instanceof EtcdCutOffError || (e instanceof EtcdAnswerError && e.grpcCode === GRPC_UNAVAILABLE);
}

/** A Store kept in an etcd cluster. */
export class EtcdStore implements Store {
  /** Backend name used in error messages. */
  readonly backend = 'etcd';
  private readonly endpoints: EtcdEndpoints;
  private readonly keyPrefix: string;
  private closed = false;
  private readonly watches = new Set<AbortController>();
  /** Revision reads of watches started "from now"; writes of this store wait for them, so the watch sees them. */
  private readonly starting = new Set<Promise<number>>();

  constructor(options: EtcdStoreOptions) {
    if (options.endpoints.length === 0) throw storeErrors.STORE_BAD_URL({ url: 'etcd:', reason: 'no endpoint given' });
    this.endpoints = new EtcdEndpoints(options.endpoints);
    this.keyPrefix = options.keyPrefix ?? '';
  }

  async get<T = unknown>(key: string): Promise<KeyValue<T> | undefined> {
    this.guard('get');
    checkKey(key);
    const r = await this.call<RawRange>('/v3/kv/range', { key: this.k(key) }, true);
    const raw = r.kvs?.[0];
    return raw && this.decode<T>(raw);
  }

  async list<T = unknown>(prefix: string, options: { limit?: number } = {}): Promise<ListResult<T>> {
    this.guard('list');
    checkPrefix(prefix);
    checkLimit(options.limit);
    const full = this.keyPrefix + prefix;
    const body = { key: b64(full === '' ? '\0' : full), range_end: rangeEnd(full), limit: String(options.limit ?? 0) };
    // One range request is one snapshot: etcd reads it at the header's revision.
    const r = await this.call<RawRange>('/v3/kv/range', body, true);
    return { items: (r.kvs ?? []).map((raw) => this.decode<T>(raw)), revision: int(r.header?.revision) };
  }

  async create<T = unknown>(key: string, value: T, options: PutOptions = {}): Promise<KeyValue<T>> {
    this.guard('create');
    checkKey(key);
    const json = encodeValue(key, value);
    const lease = options.lease ?? 0;
    checkRevision(lease, 'lease id');
    await this.writesMayStart();
    const value64 = b64(json);
    const { r, ours } = await this.casTxn({
      compare: [{ target: 'CREATE', key: this.k(key), create_revision: '0' }],
      success: [{ request_put: { key: this.k(key), value: value64, lease: String(lease) } }],
      failure: [{ request_range: { key: this.k(key) } }],
    }, lease, (kv) => kv.value === value64 && int(kv.lease) === lease && int(kv.version) === 1);
    if (ours) return this.decode<T>(ours);
    if (!r.succeeded) {
      const existing = r.responses?.[0]?.response_range?.kvs?.[0];
      throw storeErrors.STORE_EXISTS({ key, createRevision: int(existing?.create_revision) });
    }
    const rev = int(r.header?.revision);
    return { key, value: JSON.parse(json) as T, createRevision: rev, modRevision: rev, version: 1, lease };
  }

  async update<T = unknown>(key: string, value: T, modRevision: number, options: PutOptions = {}): Promise<KeyValue<T>> {
    this.guard('update');
    checkKey(key);
    checkRevision(modRevision, 'modRevision');
    const json = encodeValue(key, value);
    if (options.lease !== undefined) checkRevision(options.lease, 'lease id');
    // Omitting the lease keeps the key's own (ignore_lease), as the other backends do.
    const put = options.lease === undefined
      ? { key: this.k(key), value: b64(json), prev_kv: true, ignore_lease: true }
      : { key: this.k(key), value: b64(json), prev_kv: true, lease: String(options.lease) };
    await this.writesMayStart();
    const { r, ours } = await this.casTxn(
      { compare: this.matches(key, modRevision), success: [{ request_put: put }], failure: [{ request_range: { key: this.k(key) } }] },
      options.lease ?? 0,
      (kv) => kv.value === put.value && (options.lease === undefined || int(kv.lease) === options.lease) && int(kv.mod_revision) > modRevision,
    );
    if (ours) return this.decode<T>(ours);
    if (!r.succeeded) throw this.mismatch(key, modRevision, r);
    const prev = r.responses?.[0]?.response_put?.prev_kv;
    const rev = int(r.header?.revision);
    const lease = options.lease ?? int(prev?.lease);
    return { key, value: JSON.parse(json) as T, createRevision: int(prev?.create_revision), modRevision: rev, version: int(prev?.version) + 1, lease };
  }

  async delete<T = unknown>(key: string, modRevision?: number): Promise<KeyValue<T>> {
    this.guard('delete');
    checkKey(key);
    await this.writesMayStart();
    if (modRevision === undefined) {
      const r = await this.call<{ prev_kvs?: RawKv[] }>('/v3/kv/deleterange', { key: this.k(key), prev_kv: true });
      const prev = r.prev_kvs?.[0];
      if (!prev) throw storeErrors.STORE_NOT_FOUND({ key });
      return this.decode<T>(prev);
    }
    checkRevision(modRevision, 'modRevision');
    const r = await this.txn({
      compare: this.matches(key, modRevision),
      success: [{ request_delete_range: { key: this.k(key), prev_kv: true } }],
      failure: [{ request_range: { key: this.k(key) } }],
    }, 0);
    if (!r.succeeded) throw this.mismatch(key, modRevision, r);
    const prev = r.responses?.[0]?.response_delete_range?.prev_kvs?.[0];
    if (!prev) throw storeErrors.STORE_NOT_FOUND({ key });
    return this.decode<T>(prev);
  }

  watch<T = unknown>(prefix: string, options: WatchOptions = {}): AsyncIterable<WatchEvent<T>> {
    try {
      this.guard('watch');
      checkPrefix(prefix);
      if (options.afterRevision !== undefined) checkRevision(options.afterRevision, 'watch afterRevision');
    } catch (e) {
      return failedWatch<T>(e);
    }
    if (options.signal?.aborted) return (async function* () {})();
    const stop = new AbortController();
    const onAbort = (): void => stop.abort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    this.watches.add(stop);
    let after: Promise<number>;
    if (options.afterRevision !== undefined) {
      after = Promise.resolve(options.afterRevision);
    } else {
      // The contract starts a watch at the revision of the call: read it now, not at the first next().
      after = this.revision();
      this.starting.add(after);
      const settle = (): void => { this.starting.delete(after); };
      after.then(settle, settle);
    }
    const watches = this.watches;
    const ctx = { endpoints: this.endpoints, keyPrefix: this.keyPrefix, decode: <V>(raw: RawKv) => this.decode<V>(raw) };
    const inner = watchEtcd<T>(ctx, prefix, after, stop.signal);
    return (async function* () {
      try {
        yield* inner;
      } finally {
        options.signal?.removeEventListener('abort', onAbort);
        watches.delete(stop);
        stop.abort();
      }
    })();
  }

  async grantLease(ttlSeconds: number): Promise<Lease> {
    this.guard('grantLease');
    checkTtl(ttlSeconds);
    const ttl = Math.ceil(ttlSeconds);
    // etcd picks 63-bit ids, beyond JS numbers: Ferry picks its own and retries on the rare clash.
    for (let attempt = 0; ; attempt++) {
      const id = this.newLeaseId();
      try {
        const r = await this.endpoints.call<{ ID?: string; TTL?: string }>('/v3/lease/grant', { ID: String(id), TTL: String(ttl) });
        return { id: int(r.ID), ttl: int(r.TTL) };
      } catch (e) {
        if (attempt < 5 && e instanceof EtcdAnswerError && e.message.includes('lease already exists')) continue;
        throw this.mapError(e, 0);
      }
    }
  }

  async keepAlive(leaseId: number): Promise<Lease> {
    this.guard('keepAlive');
    checkRevision(leaseId, 'lease id');
    // The gateway's keep-alive is a stream; one request in, one answer out, then it ends.
    const r = await this.call<{ result?: { ID?: string; TTL?: string } }>('/v3/lease/keepalive', { ID: String(leaseId) }, true);
    const ttl = int(r.result?.TTL);
    if (ttl <= 0) throw storeErrors.STORE_LEASE_NOT_FOUND({ lease: leaseId });
    return { id: leaseId, ttl };
  }

  async revokeLease(leaseId: number): Promise<void> {
    this.guard('revokeLease');
    checkRevision(leaseId, 'lease id');
    await this.writesMayStart();
    try {
      await this.endpoints.call('/v3/lease/revoke', { ID: String(leaseId) });
    } catch (e) {
      if (e instanceof EtcdAnswerError && e.grpcCode === GRPC_NOT_FOUND) return;
      throw this.mapError(e, leaseId);
    }
  }

  async revision(): Promise<number> {
    this.guard('revision');
    const r = await this.call<RawRange>('/v3/kv/range', { key: b64('\0'), count_only: true }, true);
    return int(r.header?.revision);
  }

  async compact(revision: number): Promise<void> {
    this.guard('compact');
    checkRevision(revision, 'compact revision');
    if (revision === 0) return;
    try {
      await this.endpoints.call('/v3/kv/compaction', { revision: String(revision), physical: true });
    } catch (e) {
      if (e instanceof EtcdAnswerError && e.message.includes('has been compacted')) return;
      if (e instanceof EtcdAnswerError && e.message.includes('future revision')) {
        throw storeErrors.STORE_INVALID({ what: 'compact revision', reason: `${revision} is after the current revision` });
      }
      throw this.mapError(e, 0);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.watches) w.abort();
    this.watches.clear();
  }

  /** @internal Decodes a raw pair (used by watches too); the store's key prefix is stripped. */
  decode<T>(raw: RawKv): KeyValue<T> {
    const key = unb64(raw.key).slice(this.keyPrefix.length);
    let value: T;
    try {
      value = raw.value === undefined ? (null as T) : (JSON.parse(unb64(raw.value)) as T);
    } catch (e) {
      throw storeErrors.STORE_INVALID({ what: 'stored value', reason: `the value of "${key}" in etcd is not JSON (written by another tool?)` }, e);
    }
    return { key, value, createRevision: int(raw.create_revision), modRevision: int(raw.mod_revision), version: int(raw.version), lease: int(raw.lease) };
  }

  /** @internal A random lease id in [2^32, 2^53); tests override it to force a clash. */
  protected newLeaseId(): number {
    return LEASE_ID_MIN + Number(randomBytes(8).readBigUInt64BE() % BigInt(LEASE_ID_MAX - LEASE_ID_MIN));
  }

  private guard(operation: string): void {
    if (this.closed) throw storeErrors.STORE_CLOSED({ backend: this.backend, operation });
  }

  /** The base64 etcd key of a store key. */
  private k(key: string): string {
    return b64(this.keyPrefix + key);
  }

  /** Waits until watches started "from now" know their start revision (see `watch`). */
  private async writesMayStart(): Promise<void> {
    if (this.starting.size > 0) await Promise.allSettled([...this.starting]);
  }

  /** Compares for "the key exists and its mod revision is `modRevision`". */
  private matches(key: string, modRevision: number): unknown[] {
    return [
      { target: 'MOD', result: 'EQUAL', key: this.k(key), mod_revision: String(modRevision) },
      { target: 'VERSION', result: 'GREATER', key: this.k(key), version: '0' },
    ];
  }

  /** NOT_FOUND or CONFLICT, from the key as the failed transaction read it. */
  private mismatch(key: string, expected: number, r: RawTxn): Error {
    const current = r.responses?.[0]?.response_range?.kvs?.[0];
    if (!current) return storeErrors.STORE_NOT_FOUND({ key });
    return storeErrors.STORE_CONFLICT({ key, expected, actual: int(current.mod_revision) });
  }

  private async txn(body: unknown, lease: number): Promise<RawTxn> {
    try {
      return await this.endpoints.call<RawTxn>('/v3/kv/txn', body);
    } catch (e) {
      throw this.mapError(e, lease);
    }
  }

  /**
   * Runs a compare-and-swap transaction through a leader election or a lost member. After "request
   * timed out" or a connection cut mid-request the write may or may not have been applied (etcd can
   * still commit it later), so it is never repeated blindly: the same transaction is sent again, and
   * its compare makes a second application impossible. When that compare fails because the key
   * already holds exactly this write (`isOurs` of the key the failure branch read), the earlier send
   * was applied and `ours` is the key as it stands. Other failures, and a failed compare after an
   * answered first send, are the caller's to judge.
   */
  private async casTxn(body: unknown, lease: number, isOurs: (kv: RawKv) => boolean): Promise<{ r: RawTxn; ours?: RawKv }> {
    let uncertain = false;
    let r: RawTxn;
    try {
      r = await this.patiently(() => this.endpoints.call<RawTxn>('/v3/kv/txn', body), () => { uncertain = true; });
    } catch (e) {
      throw this.mapError(e, lease);
    }
    const current = r.responses?.[0]?.response_range?.kvs?.[0];
    if (!r.succeeded && uncertain && current && isOurs(current)) return { r, ours: current };
    return { r };
  }

  private async call<T>(path: string, body: unknown, idempotent = false): Promise<T> {
    try {
      // Reads may be repeated freely, so they wait out an election like writes do.
      return idempotent ? await this.patiently(() => this.endpoints.call<T>(path, body, true)) : await this.endpoints.call<T>(path, body);
    } catch (e) {
      throw this.mapError(e, 0);
    }
  }

  /**
   * Calls `send` until it answers, while its failures are transient (no leader, a member lost) and
   * WRITE_PATIENCE_MS has not passed; `onRetry` hears of each transient failure. Other errors, and
   * the last transient one, are thrown as they came.
   */
  private async patiently<T>(send: () => Promise<T>, onRetry?: () => void): Promise<T> {
    const deadline = Date.now() + WRITE_PATIENCE_MS;
    for (let pause = 100; ; pause = Math.min(pause * 2, 1000)) {
      try {
        return await send();
      } catch (e) {
        if (!transient(e) || Date.now() + pause > deadline || this.closed) throw e;
        onRetry?.();
        await new Promise((resolve) => setTimeout(resolve, pause));
      }
    }
  }

  /** Maps etcd's answers onto the store's error table; FerryErrors pass through. */
  private mapError(e: unknown, lease: number): Error {
    if (isFerryError(e)) return e;
    if (e instanceof EtcdAnswerError) {
      if (e.grpcCode === GRPC_NOT_FOUND && e.message.includes('lease')) return storeErrors.STORE_LEASE_NOT_FOUND({ lease }, e);
      return this.endpoints.unavailable(`etcd answered: ${e.message}`, e);
    }
    return this.endpoints.unavailable((e as Error).message, e);
  }
}
