/**
 * The SQLite backend, in the style of kine: every write appends a row to `kv` inside an IMMEDIATE
 * transaction, so revisions (the row ids) are handed out in commit order even when several processes
 * share the file. Watches read the log after their cursor; they are woken at once by writes of this
 * process and by a 25 ms poll of the revision for writes of other processes.
 */
import { resolve } from 'node:path';
import Database from 'better-sqlite3';
import type { KeyValue, Lease, ListResult, PutOptions, Store, WatchEvent, WatchOptions } from './types.ts';
import type { LogBatch, WatchSource } from './watch.ts';
import type { StoreOptions } from './options.ts';
import type { KvRow, Statements } from './sqlite-schema.ts';
import { isFerryError } from '../errors/index.ts';
import { storeErrors } from './errors.ts';
import { checkKey, checkLimit, checkPrefix, checkRevision, checkTtl, encodeValue, prefixEnd } from './keyspace.ts';
import { Notifier, failedWatch, watchLog } from './watch.ts';
import { COMPACT_BATCH, DEFAULT_RETAIN_REVISIONS } from './options.ts';
import { initSchema, prepareStatements, toEvent, toKv } from './sqlite-schema.ts';

/** How long a write waits for another connection's lock before failing. */
const BUSY_TIMEOUT_MS = 5_000;
/** How often watches look for writes of other processes. */
const POLL_MS = 25;
/** Longest pause between lease sweeps, so leases granted by other processes also expire on time. */
const LEASE_SWEEP_MAX_MS = 1_000;

/** Open stores by file, so a write wakes the watches of every store on that file in this process at once. */
const storesByFile = new Map<string, Set<SqliteStore>>();

/** A Store kept in one SQLite file that several processes may open at once. */
export class SqliteStore implements Store, WatchSource {
  /** Backend name used in error messages. */
  readonly backend = 'sqlite';
  /** Wakes this store's watches. */
  readonly notifier = new Notifier();
  private readonly db: Database.Database;
  private readonly q: Statements;
  private readonly file: string | undefined;
  private readonly retain: number;
  private readonly immediate: <R>(fn: () => R) => R;
  private readonly snapshot: <R>(fn: () => R) => R;
  private closed = false;
  private watches = 0;
  private pollTimer: NodeJS.Timeout | undefined;
  private polledRevision = 0;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweepAt = Infinity;
  private writesSinceCompactCheck = 0;

  /** Opens (and creates when missing) the database at `path`; the parent directory must exist. */
  constructor(path: string, options: StoreOptions = {}) {
    this.retain = options.retainRevisions ?? DEFAULT_RETAIN_REVISIONS;
    this.db = new Database(path, { timeout: BUSY_TIMEOUT_MS });
    try {
      initSchema(this.db);
      this.q = prepareStatements(this.db);
    } catch (e) {
      this.db.close();
      throw e;
    }
    const tx = this.db.transaction((fn: () => unknown) => fn());
    this.immediate = <R>(fn: () => R): R => tx.immediate(fn) as R;
    // A deferred transaction makes its reads one WAL snapshot: a list and its revision agree.
    this.snapshot = <R>(fn: () => R): R => tx.deferred(fn) as R;
    this.file = path === ':memory:' || path === '' ? undefined : resolve(path);
    if (this.file) {
      let peers = storesByFile.get(this.file);
      if (!peers) storesByFile.set(this.file, (peers = new Set()));
      peers.add(this);
    }
    this.maybeAutoCompact();
    this.armSweep(0);
  }

  async get<T = unknown>(key: string): Promise<KeyValue<T> | undefined> {
    return this.run('get', () => {
      checkKey(key);
      const r = this.q.latest.get(key);
      return r && !r.deleted ? toKv<T>(r) : undefined;
    });
  }

  async list<T = unknown>(prefix: string, options: { limit?: number } = {}): Promise<ListResult<T>> {
    return this.run('list', () => {
      checkPrefix(prefix);
      checkLimit(options.limit);
      const limit = options.limit || Infinity;
      const end = prefixEnd(prefix);
      return this.snapshot(() => {
        const items: KeyValue<T>[] = [];
        if (limit > 0) {
          const rows = end === undefined ? this.q.listOpen.iterate(prefix) : this.q.listBounded.iterate(prefix, end);
          for (const r of rows) {
            // The open range runs past the prefix; sorted rows mean the first miss ends it.
            if (!r.name.startsWith(prefix)) break;
            items.push(toKv<T>(r));
            if (items.length >= limit) break;
          }
        }
        return { items, revision: this.q.revision.get() ?? 0 };
      });
    });
  }

  async create<T = unknown>(key: string, value: T, options: PutOptions = {}): Promise<KeyValue<T>> {
    return this.run('create', () => {
      checkKey(key);
      const json = encodeValue(key, value);
      if (options.lease !== undefined) checkRevision(options.lease, 'lease id');
      const row = this.write(() => {
        const prev = this.q.latest.get(key);
        if (prev && !prev.deleted) throw storeErrors.STORE_EXISTS({ key, createRevision: prev.create_revision });
        const lease = this.resolveLease(options.lease, 0);
        const id = this.nextRevision();
        return this.append({ id, name: key, created: 1, deleted: 0, create_revision: id, prev_revision: prev?.id ?? 0, version: 1, lease, value: json });
      });
      return toKv<T>(row);
    });
  }

  async update<T = unknown>(key: string, value: T, modRevision: number, options: PutOptions = {}): Promise<KeyValue<T>> {
    return this.run('update', () => {
      checkKey(key);
      checkRevision(modRevision, 'modRevision');
      if (options.lease !== undefined) checkRevision(options.lease, 'lease id');
      const row = this.write(() => {
        const prev = this.q.latest.get(key);
        if (!prev || prev.deleted) throw storeErrors.STORE_NOT_FOUND({ key });
        if (prev.id !== modRevision) throw storeErrors.STORE_CONFLICT({ key, expected: modRevision, actual: prev.id });
        const json = encodeValue(key, value);
        // Omitting the lease keeps the key's lease (unlike etcd's put), so a read-modify-write never detaches a key by accident.
        const lease = this.resolveLease(options.lease, prev.lease);
        return this.append({
          id: this.nextRevision(), name: key, created: 0, deleted: 0, create_revision: prev.create_revision,
          prev_revision: prev.id, version: prev.version + 1, lease, value: json,
        });
      });
      return toKv<T>(row);
    });
  }

  async delete<T = unknown>(key: string, modRevision?: number): Promise<KeyValue<T>> {
    return this.run('delete', () => {
      checkKey(key);
      if (modRevision !== undefined) checkRevision(modRevision, 'modRevision');
      const prev = this.write(() => {
        const prev = this.q.latest.get(key);
        if (!prev || prev.deleted) throw storeErrors.STORE_NOT_FOUND({ key });
        if (modRevision !== undefined && prev.id !== modRevision) throw storeErrors.STORE_CONFLICT({ key, expected: modRevision, actual: prev.id });
        this.appendDelete(prev);
        return prev;
      });
      return toKv<T>(prev);
    });
  }

  watch<T = unknown>(prefix: string, options: WatchOptions = {}): AsyncIterable<WatchEvent<T>> {
    // "Now" is fixed when watch() is called, so writes made before the first next() are not missed.
    let after = options.afterRevision ?? 0;
    try {
      if (options.afterRevision === undefined && !this.closed) after = this.q.revision.get() ?? 0;
    } catch (e) {
      return failedWatch(this.unavailable(e));
    }
    return watchLog<T>(this, prefix, after, options.signal);
  }

  async grantLease(ttlSeconds: number): Promise<Lease> {
    return this.run('grantLease', () => {
      checkTtl(ttlSeconds);
      const ttlMs = ttlSeconds * 1000;
      const id = Number(this.q.insertLease.run(ttlSeconds, Date.now() + ttlMs).lastInsertRowid);
      this.armSweep(ttlMs);
      return { id, ttl: ttlSeconds };
    });
  }

  async keepAlive(leaseId: number): Promise<Lease> {
    return this.run('keepAlive', () => {
      checkRevision(leaseId, 'lease id');
      const lease = this.immediate(() => {
        const row = this.q.lease.get(leaseId);
        if (!row || row.expires_at <= Date.now()) return undefined;
        this.q.touchLease.run(Date.now() + row.ttl * 1000, leaseId);
        return row;
      });
      if (!lease) {
        this.armSweep(0); // an expired lease not yet swept: delete its keys now rather than at the next sweep
        throw storeErrors.STORE_LEASE_NOT_FOUND({ lease: leaseId });
      }
      return { id: lease.id, ttl: lease.ttl };
    });
  }

  async revokeLease(leaseId: number): Promise<void> {
    return this.run('revokeLease', () => {
      checkRevision(leaseId, 'lease id');
      this.write(() => this.dropLease(leaseId));
    });
  }

  async revision(): Promise<number> {
    return this.run('revision', () => this.q.revision.get() ?? 0);
  }

  async compact(revision: number): Promise<void> {
    return this.run('compact', () => {
      checkRevision(revision, 'compact revision');
      const current = this.q.revision.get() ?? 0;
      if (revision > current) throw storeErrors.STORE_INVALID({ what: 'compact revision', reason: `${revision} is after the current revision ${current}` });
      this.compactTo(revision);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pollTimer);
    clearTimeout(this.sweepTimer);
    if (this.file) {
      const peers = storesByFile.get(this.file);
      peers?.delete(this);
      if (peers?.size === 0) storesByFile.delete(this.file);
    }
    this.notifier.notify();
    this.db.close();
  }

  /** @internal Part of WatchSource. */
  isClosed(): boolean {
    return this.closed;
  }

  /** @internal Part of WatchSource. */
  readAfter(after: number, prefix: string, limit: number): LogBatch {
    try {
      return this.readLog(after, prefix, limit);
    } catch (e) {
      throw this.unavailable(e);
    }
  }

  private readLog(after: number, prefix: string, limit: number): LogBatch {
    return this.snapshot(() => {
      const compactRevision = this.q.compactRevision.get() ?? 0;
      if (after < compactRevision) throw storeErrors.STORE_COMPACTED({ revision: after, compactRevision });
      const rows = this.q.events.all(after, limit);
      const events: WatchEvent[] = [];
      for (const r of rows) if (r.name.startsWith(prefix)) events.push(toEvent(r));
      const more = rows.length >= limit;
      // Once every row of this snapshot is read, the cursor may jump to its revision even if the newest rows were compacted away.
      const next = more ? (rows[rows.length - 1] as KvRow).id : Math.max(after, this.q.revision.get() ?? 0);
      return { events, next, more };
    });
  }

  /** @internal Part of WatchSource: polls for other processes' writes only while someone watches. */
  watchStarted(): void {
    if (this.watches++ > 0) return;
    this.polledRevision = -1; // the first poll wakes the watches once, harmlessly; no read here that could throw
    // Not unref'd: a pending watch is work in progress, like an open socket.
    this.pollTimer = setInterval(() => this.poll(), POLL_MS);
  }

  /** @internal Part of WatchSource. */
  watchEnded(): void {
    if (--this.watches > 0) return;
    clearInterval(this.pollTimer);
    this.pollTimer = undefined;
  }

  private poll(): void {
    if (this.closed) return;
    try {
      const rev = this.q.revision.get() ?? 0;
      if (rev === this.polledRevision) return;
      this.polledRevision = rev;
    } catch {
      // Wake the watches anyway: their own read meets the error and reports it to the consumer.
    }
    this.notifier.notify();
  }

  /** Runs a public operation: refuses it once closed, and turns SQLite's own errors into STORE_UNAVAILABLE. */
  private async run<R>(operation: string, fn: () => R): Promise<R> {
    if (this.closed) throw storeErrors.STORE_CLOSED({ backend: this.backend, operation });
    try {
      return fn();
    } catch (e) {
      throw this.unavailable(e);
    }
  }

  private unavailable(e: unknown): unknown {
    if (isFerryError(e)) return e;
    const reason = e instanceof Error ? e.message : String(e);
    return storeErrors.STORE_UNAVAILABLE({ backend: this.backend, location: this.file ?? ':memory:', reason }, e);
  }

  /** Runs `fn` in an IMMEDIATE transaction, then wakes the watches on this file and compacts when due. */
  private write<R>(fn: () => R): R {
    const out = this.immediate(fn);
    for (const peer of (this.file && storesByFile.get(this.file)) || [this]) peer.notifier.notify();
    if (++this.writesSinceCompactCheck >= COMPACT_BATCH) {
      this.writesSinceCompactCheck = 0;
      this.maybeAutoCompact();
    }
    return out;
  }

  private nextRevision(): number {
    return (this.q.revision.get() ?? 0) + 1;
  }

  private append(row: KvRow): KvRow {
    this.q.insert.run(row);
    return row;
  }

  /** Writes the delete row of `prev`; it carries the key as it was, so watchers see what went away. */
  private appendDelete(prev: KvRow): void {
    this.append({ ...prev, id: this.nextRevision(), created: 0, deleted: 1, prev_revision: prev.id });
  }

  /** The lease id to write, checked inside the write transaction: `requested` when given (0 detaches), else `current`. */
  private resolveLease(requested: number | undefined, current: number): number {
    if (requested === undefined) return current;
    if (requested === 0) return 0;
    const row = this.q.lease.get(requested);
    if (!row || row.expires_at <= Date.now()) throw storeErrors.STORE_LEASE_NOT_FOUND({ lease: requested });
    return requested;
  }

  /** Deletes the lease's keys (one revision each) and the lease; must run inside a write transaction. */
  private dropLease(id: number): void {
    for (const row of this.q.leaseKeys.all(id)) this.appendDelete(row);
    this.q.dropLease.run(id);
  }

  /** Schedules the lease sweep in `delayMs` unless one is due sooner. */
  private armSweep(delayMs: number): void {
    if (this.closed) return;
    const at = Date.now() + Math.min(delayMs, LEASE_SWEEP_MAX_MS);
    if (this.sweepTimer && at >= this.sweepAt) return;
    clearTimeout(this.sweepTimer);
    this.sweepAt = at;
    this.sweepTimer = setTimeout(() => this.sweep(), Math.max(0, at - Date.now()));
    // Leases must not keep the process alive; whoever opens the file next sweeps what expired.
    this.sweepTimer.unref();
  }

  /** Deletes the keys of expired leases (of any process sharing the file), then schedules itself again. */
  private sweep(): void {
    this.sweepTimer = undefined;
    this.sweepAt = Infinity;
    if (this.closed) return;
    let next = LEASE_SWEEP_MAX_MS;
    try {
      for (const id of this.q.expiredLeases.all(Date.now())) {
        // Re-check inside the transaction: another process may have kept the lease alive meanwhile.
        this.write(() => {
          const row = this.q.lease.get(id);
          if (row && row.expires_at <= Date.now()) this.dropLease(id);
        });
      }
      const soonest = this.q.nextExpiry.get();
      if (soonest !== null && soonest !== undefined) next = Math.max(0, soonest - Date.now());
    } catch {
      // A busy or failing database: the next sweep tries again; the lease keys stay until then.
    }
    this.armSweep(next);
  }

  private maybeAutoCompact(): void {
    try {
      const rev = this.q.revision.get() ?? 0;
      if (rev - (this.q.compactRevision.get() ?? 0) >= this.retain + COMPACT_BATCH) this.compactTo(rev - this.retain);
    } catch {
      // Compaction is housekeeping: a busy database must not fail the write that triggered it.
    }
  }

  /** Compacts in IMMEDIATE transactions of at most COMPACT_BATCH revisions, so writers wait only briefly. */
  private compactTo(revision: number): void {
    for (;;) {
      const done = this.immediate(() => {
        const from = this.q.compactRevision.get() ?? 0;
        if (from >= revision) return true;
        const to = Math.min(revision, from + COMPACT_BATCH);
        // Superseded rows first: they are found through the rows in range, tombstones included.
        this.q.compactSuperseded.run(from, to);
        this.q.compactTombstones.run(from, to);
        this.q.setCompactRevision.run(to);
        return to >= revision;
      });
      if (done) return;
    }
  }
}
