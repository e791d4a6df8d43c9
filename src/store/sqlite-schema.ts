/**
 * The SQLite layout, as kine lays it out: `kv` is an append-only log whose autoincrement id is the
 * store revision; a key's current value is its newest row unless that row is a delete. Every
 * statement the backend runs is prepared here once, and rows are turned back into keys and events here.
 */
import type Database from 'better-sqlite3';
import type { KeyValue, WatchEvent } from './types.ts';

/** One row of the `kv` log. */
export interface KvRow {
  readonly id: number;
  readonly name: string;
  /** 1 when this row created the key (after nothing or after a delete). */
  readonly created: number;
  /** 1 when this row deleted the key; it then carries the key as it was. */
  readonly deleted: number;
  readonly create_revision: number;
  /** Id of the key's previous row, 0 when none; watches read prevKv from it. */
  readonly prev_revision: number;
  readonly version: number;
  readonly lease: number;
  /** JSON text. */
  readonly value: string;
}

/** A `kv` row joined with its previous row, for watch events. */
export interface EventRow extends KvRow {
  readonly p_id: number | null;
  readonly p_deleted: number | null;
  readonly p_create_revision: number;
  readonly p_version: number;
  readonly p_lease: number;
  readonly p_value: string;
}

/** One row of `leases`; `expires_at` is in milliseconds since the epoch. */
export interface LeaseRow {
  readonly id: number;
  readonly ttl: number;
  readonly expires_at: number;
}

// `version` is an addition to kine's columns: etcd's per-key version cannot be derived once history is compacted.
const DDL = `
CREATE TABLE IF NOT EXISTS kv (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  created INTEGER NOT NULL,
  deleted INTEGER NOT NULL,
  create_revision INTEGER NOT NULL,
  prev_revision INTEGER NOT NULL,
  version INTEGER NOT NULL,
  lease INTEGER NOT NULL,
  value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_name_id ON kv (name, id);
CREATE INDEX IF NOT EXISTS kv_lease ON kv (lease) WHERE lease != 0;
CREATE TABLE IF NOT EXISTS leases (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ttl REAL NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_expires_at ON leases (expires_at);
CREATE TABLE IF NOT EXISTS meta (
  key TEXT PRIMARY KEY,
  value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', 1), ('compact_revision', 0);
`;

/** Sets the connection up (WAL, NORMAL sync) and creates the tables when missing. */
export function initSchema(db: Database.Database): void {
  // WAL lets readers (watch polls) run while another connection or process writes.
  db.pragma('journal_mode = WAL');
  // NORMAL in WAL mode stays consistent after a crash; it may only lose the last commits on power loss.
  db.pragma('synchronous = NORMAL');
  db.transaction(() => db.exec(DDL)).immediate();
}

/** Prepares every statement the backend uses. */
export function prepareStatements(db: Database.Database) {
  return {
    /** Current revision: AUTOINCREMENT's high-water mark survives compaction of the newest rows. */
    revision: db.prepare<[], number>(`SELECT seq FROM sqlite_sequence WHERE name = 'kv'`).pluck(),
    compactRevision: db.prepare<[], number>(`SELECT value FROM meta WHERE key = 'compact_revision'`).pluck(),
    setCompactRevision: db.prepare<[number]>(`UPDATE meta SET value = ? WHERE key = 'compact_revision'`),
    latest: db.prepare<[string], KvRow>('SELECT * FROM kv WHERE name = ? ORDER BY id DESC LIMIT 1'),
    insert: db.prepare<[KvRow]>(
      `INSERT INTO kv (id, name, created, deleted, create_revision, prev_revision, version, lease, value)
       VALUES (@id, @name, @created, @deleted, @create_revision, @prev_revision, @version, @lease, @value)`,
    ),
    listBounded: db.prepare<[string, string], KvRow>(
      `SELECT k.* FROM kv k WHERE k.name >= ? AND k.name < ? AND k.deleted = 0
       AND k.id = (SELECT MAX(id) FROM kv WHERE name = k.name) ORDER BY k.name`,
    ),
    listOpen: db.prepare<[string], KvRow>(
      `SELECT k.* FROM kv k WHERE k.name >= ? AND k.deleted = 0
       AND k.id = (SELECT MAX(id) FROM kv WHERE name = k.name) ORDER BY k.name`,
    ),
    events: db.prepare<[number, number], EventRow>(
      `SELECT k.*, p.id AS p_id, p.deleted AS p_deleted, p.create_revision AS p_create_revision,
              p.version AS p_version, p.lease AS p_lease, p.value AS p_value
       FROM kv k LEFT JOIN kv p ON p.id = k.prev_revision
       WHERE k.id > ? ORDER BY k.id LIMIT ?`,
    ),
    /** Rows superseded by a row in (from, to]: exactly the history a compaction to `to` forgets. */
    compactSuperseded: db.prepare<[number, number]>(
      'DELETE FROM kv WHERE id IN (SELECT prev_revision FROM kv WHERE id > ? AND id <= ? AND prev_revision != 0)',
    ),
    compactTombstones: db.prepare<[number, number]>('DELETE FROM kv WHERE id > ? AND id <= ? AND deleted = 1'),
    leaseKeys: db.prepare<[number], KvRow>(
      `SELECT k.* FROM kv k WHERE k.lease = ? AND k.lease != 0 AND k.deleted = 0
       AND k.id = (SELECT MAX(id) FROM kv WHERE name = k.name) ORDER BY k.name`,
    ),
    insertLease: db.prepare<[number, number]>('INSERT INTO leases (ttl, expires_at) VALUES (?, ?)'),
    lease: db.prepare<[number], LeaseRow>('SELECT * FROM leases WHERE id = ?'),
    touchLease: db.prepare<[number, number]>('UPDATE leases SET expires_at = ? WHERE id = ?'),
    dropLease: db.prepare<[number]>('DELETE FROM leases WHERE id = ?'),
    expiredLeases: db.prepare<[number], number>('SELECT id FROM leases WHERE expires_at <= ? ORDER BY expires_at LIMIT 100').pluck(),
    nextExpiry: db.prepare<[], number | null>('SELECT MIN(expires_at) FROM leases').pluck(),
  };
}

/** The prepared statements of one connection. */
export type Statements = ReturnType<typeof prepareStatements>;

/** The key a `kv` row holds (for a delete row: the key as it was, at the delete's revision). */
export function toKv<T>(r: KvRow): KeyValue<T> {
  return { key: r.name, value: JSON.parse(r.value) as T, createRevision: r.create_revision, modRevision: r.id, version: r.version, lease: r.lease };
}

/** The watch event a `kv` row stands for. */
export function toEvent(r: EventRow): WatchEvent {
  const type = r.deleted ? 'delete' : 'put';
  // A create's previous row is a delete (or nothing): the key did not exist before it.
  if (r.p_id === null || r.p_deleted !== 0) return { type, revision: r.id, kv: toKv(r) };
  const prevKv = { key: r.name, value: JSON.parse(r.p_value) as unknown, createRevision: r.p_create_revision, modRevision: r.p_id, version: r.p_version, lease: r.p_lease };
  return { type, revision: r.id, kv: toKv(r), prevKv };
}
