/**
 * The in-memory backend: a map of current keys plus a log of events for watches. Values are kept as
 * JSON text and parsed on every read, so callers get private copies and see exactly what the SQLite
 * backend would return (the fake must not be kinder than the real thing).
 */
import type { KeyValue, Lease, ListResult, PutOptions, Store, WatchEvent, WatchOptions } from './types.ts';
import type { LogBatch, WatchSource } from './watch.ts';
import type { StoreOptions } from './options.ts';
import { storeErrors } from './errors.ts';
import { checkKey, checkLimit, checkPrefix, checkRevision, checkTtl, compareKeys, encodeValue } from './keyspace.ts';
import { Notifier, watchLog } from './watch.ts';
import { COMPACT_BATCH, DEFAULT_RETAIN_REVISIONS } from './options.ts';

/** One version of a key, value still encoded. */
interface Rec {
  readonly key: string;
  readonly json: string;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  readonly lease: number;
}

/** One write in the log. */
interface Entry {
  readonly type: 'put' | 'delete';
  readonly kv: Rec;
  readonly prev?: Rec;
}

interface MemoryLease {
  readonly id: number;
  readonly ttl: number;
  expiresAt: number;
  readonly keys: Set<string>;
  timer?: NodeJS.Timeout;
}

function decode<T>(r: Rec): KeyValue<T> {
  return { key: r.key, value: JSON.parse(r.json) as T, createRevision: r.createRevision, modRevision: r.modRevision, version: r.version, lease: r.lease };
}

/** A Store held in this process's memory; for tests and single-process tools. */
export class MemoryStore implements Store, WatchSource {
  /** Backend name used in error messages. */
  readonly backend = 'memory';
  /** Wakes watches after every write. */
  readonly notifier = new Notifier();
  private rev = 0;
  private compactRev = 0;
  /** Events after the compact revision: `log[i]` has revision `compactRev + 1 + i`. */
  private log: Entry[] = [];
  private readonly current = new Map<string, Rec>();
  private readonly leases = new Map<number, MemoryLease>();
  private nextLeaseId = 1;
  private closed = false;
  private readonly retain: number;

  constructor(options: StoreOptions = {}) {
    this.retain = options.retainRevisions ?? DEFAULT_RETAIN_REVISIONS;
  }

  async get<T = unknown>(key: string): Promise<KeyValue<T> | undefined> {
    this.guard('get');
    checkKey(key);
    const r = this.current.get(key);
    return r && decode<T>(r);
  }

  async list<T = unknown>(prefix: string, options: { limit?: number } = {}): Promise<ListResult<T>> {
    this.guard('list');
    checkPrefix(prefix);
    checkLimit(options.limit);
    const found: Rec[] = [];
    for (const r of this.current.values()) if (r.key.startsWith(prefix)) found.push(r);
    found.sort((a, b) => compareKeys(a.key, b.key));
    const items = (options.limit ? found.slice(0, options.limit) : found).map((r) => decode<T>(r));
    return { items, revision: this.rev };
  }

  async create<T = unknown>(key: string, value: T, options: PutOptions = {}): Promise<KeyValue<T>> {
    this.guard('create');
    checkKey(key);
    const json = encodeValue(key, value);
    const lease = this.resolveLease(options.lease, 0);
    const prev = this.current.get(key);
    if (prev) throw storeErrors.STORE_EXISTS({ key, createRevision: prev.createRevision });
    const rev = this.rev + 1;
    return decode<T>(this.append('put', { key, json, createRevision: rev, modRevision: rev, version: 1, lease }));
  }

  async update<T = unknown>(key: string, value: T, modRevision: number, options: PutOptions = {}): Promise<KeyValue<T>> {
    this.guard('update');
    checkKey(key);
    checkRevision(modRevision, 'modRevision');
    const prev = this.current.get(key);
    if (!prev) throw storeErrors.STORE_NOT_FOUND({ key });
    if (prev.modRevision !== modRevision) throw storeErrors.STORE_CONFLICT({ key, expected: modRevision, actual: prev.modRevision });
    const json = encodeValue(key, value);
    // Omitting the lease keeps the key's lease (unlike etcd's put), so a read-modify-write never detaches a key by accident.
    const lease = this.resolveLease(options.lease, prev.lease);
    const kv: Rec = { key, json, createRevision: prev.createRevision, modRevision: this.rev + 1, version: prev.version + 1, lease };
    return decode<T>(this.append('put', kv, prev));
  }

  async delete<T = unknown>(key: string, modRevision?: number): Promise<KeyValue<T>> {
    this.guard('delete');
    checkKey(key);
    if (modRevision !== undefined) checkRevision(modRevision, 'modRevision');
    const prev = this.current.get(key);
    if (!prev) throw storeErrors.STORE_NOT_FOUND({ key });
    if (modRevision !== undefined && prev.modRevision !== modRevision) {
      throw storeErrors.STORE_CONFLICT({ key, expected: modRevision, actual: prev.modRevision });
    }
    this.remove(prev);
    return decode<T>(prev);
  }

  watch<T = unknown>(prefix: string, options: WatchOptions = {}): AsyncIterable<WatchEvent<T>> {
    return watchLog<T>(this, prefix, options.afterRevision ?? this.rev, options.signal);
  }

  async grantLease(ttlSeconds: number): Promise<Lease> {
    this.guard('grantLease');
    checkTtl(ttlSeconds);
    const lease: MemoryLease = { id: this.nextLeaseId++, ttl: ttlSeconds, expiresAt: Date.now() + ttlSeconds * 1000, keys: new Set() };
    this.leases.set(lease.id, lease);
    this.arm(lease);
    return { id: lease.id, ttl: lease.ttl };
  }

  async keepAlive(leaseId: number): Promise<Lease> {
    this.guard('keepAlive');
    checkRevision(leaseId, 'lease id');
    const lease = this.liveLease(leaseId);
    if (!lease) throw storeErrors.STORE_LEASE_NOT_FOUND({ lease: leaseId });
    lease.expiresAt = Date.now() + lease.ttl * 1000;
    this.arm(lease);
    return { id: lease.id, ttl: lease.ttl };
  }

  async revokeLease(leaseId: number): Promise<void> {
    this.guard('revokeLease');
    checkRevision(leaseId, 'lease id');
    const lease = this.leases.get(leaseId);
    if (lease) this.expire(lease);
  }

  async revision(): Promise<number> {
    this.guard('revision');
    return this.rev;
  }

  async compact(revision: number): Promise<void> {
    this.guard('compact');
    checkRevision(revision, 'compact revision');
    if (revision > this.rev) throw storeErrors.STORE_INVALID({ what: 'compact revision', reason: `${revision} is after the current revision ${this.rev}` });
    this.compactTo(revision);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const lease of this.leases.values()) clearTimeout(lease.timer);
    this.leases.clear();
    this.current.clear();
    this.log = [];
    this.notifier.notify();
  }

  /** @internal Part of WatchSource. */
  isClosed(): boolean {
    return this.closed;
  }

  /** @internal Part of WatchSource. */
  readAfter(after: number, prefix: string, limit: number): LogBatch {
    if (after < this.compactRev) throw storeErrors.STORE_COMPACTED({ revision: after, compactRevision: this.compactRev });
    const start = after - this.compactRev;
    const end = Math.min(this.log.length, start + limit);
    const events: WatchEvent[] = [];
    for (let i = start; i < end; i++) {
      const e = this.log[i] as Entry;
      if (!e.kv.key.startsWith(prefix)) continue;
      events.push(e.prev ? { type: e.type, revision: e.kv.modRevision, kv: decode(e.kv), prevKv: decode(e.prev) } : { type: e.type, revision: e.kv.modRevision, kv: decode(e.kv) });
    }
    return { events, next: end > start ? this.compactRev + end : after, more: end < this.log.length };
  }

  /** @internal Part of WatchSource; memory watches need no poller. */
  watchStarted(): void {}

  /** @internal Part of WatchSource. */
  watchEnded(): void {}

  private guard(operation: string): void {
    if (this.closed) throw storeErrors.STORE_CLOSED({ backend: this.backend, operation });
  }

  /** Records one write: bumps the revision, updates the current map and lease membership, wakes watches. */
  private append(type: 'put' | 'delete', kv: Rec, prev?: Rec): Rec {
    this.rev = kv.modRevision;
    this.log.push(prev ? { type, kv, prev } : { type, kv });
    if (type === 'put') this.current.set(kv.key, kv);
    else this.current.delete(kv.key);
    if (prev && prev.lease !== 0) this.leases.get(prev.lease)?.keys.delete(prev.key);
    if (type === 'put' && kv.lease !== 0) this.leases.get(kv.lease)?.keys.add(kv.key);
    this.notifier.notify();
    if (this.rev - this.compactRev >= this.retain + COMPACT_BATCH) this.compactTo(this.rev - this.retain);
    return kv;
  }

  private remove(prev: Rec): void {
    this.append('delete', { ...prev, modRevision: this.rev + 1 }, prev);
  }

  private compactTo(revision: number): void {
    if (revision <= this.compactRev) return;
    this.log = this.log.slice(revision - this.compactRev);
    this.compactRev = revision;
  }

  /** The lease id to write: `requested` when given (0 detaches), else `current`. */
  private resolveLease(requested: number | undefined, current: number): number {
    if (requested === undefined) return current;
    checkRevision(requested, 'lease id');
    if (requested === 0) return 0;
    if (!this.liveLease(requested)) throw storeErrors.STORE_LEASE_NOT_FOUND({ lease: requested });
    return requested;
  }

  /** The lease if it exists and has not expired; an expired one whose timer is late is reaped now. */
  private liveLease(id: number): MemoryLease | undefined {
    const lease = this.leases.get(id);
    if (!lease) return undefined;
    if (lease.expiresAt > Date.now()) return lease;
    this.expire(lease);
    return undefined;
  }

  private arm(lease: MemoryLease): void {
    clearTimeout(lease.timer);
    lease.timer = setTimeout(() => this.onLeaseTimer(lease.id), Math.max(0, lease.expiresAt - Date.now()));
    // A lease must not keep the process alive; nobody is left to observe its expiry then.
    lease.timer.unref();
  }

  private onLeaseTimer(id: number): void {
    const lease = this.leases.get(id);
    if (!lease || this.closed) return;
    if (lease.expiresAt > Date.now()) this.arm(lease);
    else this.expire(lease);
  }

  /** Drops the lease and deletes its keys, one revision per key, in key order. */
  private expire(lease: MemoryLease): void {
    clearTimeout(lease.timer);
    this.leases.delete(lease.id);
    for (const key of [...lease.keys].sort(compareKeys)) {
      const r = this.current.get(key);
      if (r && r.lease === lease.id) this.remove(r);
    }
  }
}
