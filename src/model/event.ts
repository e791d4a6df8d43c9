/** Cluster events: what happened to nodes and containers (`ferry events`), at `/ferry/events/<time>-<n>`. */

/** One event. */
export interface ClusterEvent {
  /** ISO time. */
  readonly at: string;
  /** What happened: NodeSuspect, NodeDown, NodeReady, Failover, FailoverRefused, Fenced… */
  readonly kind: string;
  /** What it is about: `node/<name>` or `container/<name>`. */
  readonly object: string;
  readonly message: string;
}

/** How many events the store keeps (older ones are trimmed). */
export const EVENTS_KEPT = 1000;

/** The key id of an event at `ms`: sorts by time. */
export function eventId(ms: number, n: number): string {
  return `${String(ms).padStart(15, '0')}-${String(n % 100000).padStart(5, '0')}`;
}
