/**
 * The storage contract every backend keeps (memory, SQLite, later etcd). It is shaped like etcd's
 * KV + Watch + Lease APIs, as kine does: one global revision counter that increases by one on every
 * write, per-key create/mod revisions, compare-and-swap on the mod revision, watches that replay
 * history from a revision, and leases that delete their keys when they expire.
 */

/** One stored key with its value and revisions. */
export interface KeyValue<T = unknown> {
  /** The full key, e.g. `/ferry/containers/web`. */
  readonly key: string;
  /** The JSON value. */
  readonly value: T;
  /** Revision of the write that created this key (since its last delete). */
  readonly createRevision: number;
  /** Revision of the last write to this key; pass it to update/delete for compare-and-swap. */
  readonly modRevision: number;
  /** Number of writes since creation (1 after create). */
  readonly version: number;
  /** Lease the key is attached to, 0 when none. */
  readonly lease: number;
}

/** One change seen by a watch. */
export interface WatchEvent<T = unknown> {
  /** `put` for create/update, `delete` for delete or lease expiry. */
  readonly type: 'put' | 'delete';
  /** Revision of this change. */
  readonly revision: number;
  /** The key after the change; for a delete, the key as it was with `modRevision` = the delete's revision. */
  readonly kv: KeyValue<T>;
  /** The key before the change, when it existed. */
  readonly prevKv?: KeyValue<T>;
}

/** Result of a list: the matching keys and the store revision they were read at. */
export interface ListResult<T = unknown> {
  readonly items: KeyValue<T>[];
  /** Revision of the snapshot; watch with `afterRevision` = this to miss nothing. */
  readonly revision: number;
}

/** Options for writes that may attach a lease. */
export interface PutOptions {
  /** Lease id from `grantLease`; the key is deleted when the lease expires or is revoked. */
  readonly lease?: number;
}

/** A granted lease. */
export interface Lease {
  readonly id: number;
  /** Time to live in seconds. */
  readonly ttl: number;
}

/** Options of a watch. */
export interface WatchOptions {
  /** Deliver every event with revision > afterRevision (history first, then live). Default: now. */
  readonly afterRevision?: number;
  /** Ends the watch; the iterator then finishes without error. */
  readonly signal?: AbortSignal;
}

/** The revisioned key-value store. Every method is safe to call concurrently. */
export interface Store {
  /** Returns the key, or undefined when it does not exist. */
  get<T = unknown>(key: string): Promise<KeyValue<T> | undefined>;
  /** Returns every key that starts with `prefix`, sorted by key, at one revision. */
  list<T = unknown>(prefix: string, options?: { limit?: number }): Promise<ListResult<T>>;
  /** Creates the key; throws FERRY_ERR_STORE_EXISTS when it exists. */
  create<T = unknown>(key: string, value: T, options?: PutOptions): Promise<KeyValue<T>>;
  /**
   * Replaces the value if the key's modRevision equals `modRevision`; throws FERRY_ERR_STORE_CONFLICT
   * when it changed meanwhile and FERRY_ERR_STORE_NOT_FOUND when the key is gone.
   */
  update<T = unknown>(key: string, value: T, modRevision: number, options?: PutOptions): Promise<KeyValue<T>>;
  /**
   * Deletes the key, if `modRevision` is given only when it still matches (else FERRY_ERR_STORE_CONFLICT);
   * throws FERRY_ERR_STORE_NOT_FOUND when it does not exist. Returns the deleted key.
   */
  delete<T = unknown>(key: string, modRevision?: number): Promise<KeyValue<T>>;
  /**
   * Streams changes to keys under `prefix` in revision order. Throws FERRY_ERR_STORE_COMPACTED when
   * `afterRevision` is older than the compacted history.
   */
  watch<T = unknown>(prefix: string, options?: WatchOptions): AsyncIterable<WatchEvent<T>>;
  /** Grants a lease that expires `ttlSeconds` after the last keep-alive. */
  grantLease(ttlSeconds: number): Promise<Lease>;
  /** Renews the lease; throws FERRY_ERR_STORE_LEASE_NOT_FOUND when it has expired or never existed. */
  keepAlive(leaseId: number): Promise<Lease>;
  /** Revokes the lease now, deleting its keys. No error when it is already gone. */
  revokeLease(leaseId: number): Promise<void>;
  /** The current revision of the store. */
  revision(): Promise<number>;
  /** Forgets history at or below `revision`; watches from before it then fail with COMPACTED. */
  compact(revision: number): Promise<void>;
  /** Releases resources; open watches end. */
  close(): Promise<void>;
}
