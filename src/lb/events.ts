/** What the lb reports while it works, and what its operations return. */

/** A lifecycle or progress event of the lb. */
export type LbEvent =
  | { type: 'started'; masterPid: number; workerPid: number }
  | { type: 'applied'; commands: number; reloaded: boolean }
  | { type: 'reloaded'; reason: string; oldWorkerPid: number; newWorkerPid: number }
  | { type: 'hold'; service: string; on: boolean }
  | { type: 'drain'; service: string; server: string; phase: DrainPhase; sessions: number }
  | { type: 'stopped'; masterPid: number };

/** Steps of a drain as reported in `drain` events. */
export type DrainPhase = 'draining' | 'waiting' | 'drained' | 'deadline' | 'removed' | 'superseded';

/** What `apply` did. */
export interface ApplyResult {
  /** The runtime API commands sent, in order (after a reload: the ones the config could not express). */
  commands: string[];
  /** True when the pool had to grow (or a failed step be repaired) through a hitless reload. */
  reloaded: boolean;
  /** Why it reloaded. */
  reason?: string;
}

/** What `drain` did. */
export interface DrainResult {
  service: string;
  server: string;
  /** True when the server's sessions reached 0 before the deadline. */
  drained: boolean;
  /** Sessions still open at the deadline (cut when it was reached). */
  sessionsLeft: number;
  /** False when the server was changed or removed by someone else during the wait (then left as it is). */
  removed: boolean;
}
