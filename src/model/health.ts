/**
 * Node health and fencing. A node's agent renews a lease; when the lease lapses the node is Suspect
 * (nothing new goes there), and after the fence grace it is Down: its agent has fenced itself by then
 * (killed its containers), so the manager may start replacements elsewhere with a higher epoch.
 *
 *   Ready ──lease lapses──▶ Suspect ──grace passes──▶ Down ──(failover done, agent back)──▶ Ready
 *     ▲                        │
 *     └──heartbeat (CAS)───────┘
 *
 * Suspect → Ready (a heartbeat) and Suspect → Down (the manager) are compare-and-swaps on the same
 * key, so exactly one wins: a node that came back in time keeps its containers, one declared Down
 * learns it from its next heartbeat and never restarts what moved away.
 */
import { Type, type Static } from 'typebox';
import type { ContainerSpec } from './container.ts';
import { SERVICE_LABELS } from './service.ts';

/**
 * Why a container may not fail over to another node, or undefined when it may (a service replica, or
 * a restart policy, with no host-bound data and no pin). Only such containers are fenced: one nobody
 * would start elsewhere gains nothing from being killed when its host loses the cluster.
 */
export function failoverRefusal(spec: ContainerSpec): string | undefined {
  const pinned = spec.volumes.find((v) => (v.kind ?? 'bind') !== 'shared');
  if (pinned) {
    const what = (pinned.kind ?? 'bind') === 'bind' ? `the host directory ${pinned.source}` : `the host-local volume "${pinned.source}"`;
    return `it uses ${what}, which only that host has (only shared volumes follow a failover)`;
  }
  if (spec.node !== undefined) return `it is pinned to node ${spec.node}`;
  const replica = spec.labels[SERVICE_LABELS.service] !== undefined;
  if (!replica && spec.restart.policy === 'no') return 'its restart policy is "no" (give it --restart always or on-failure to fail over)';
  if (spec.state === 'stopped') return 'it is stopped';
  return undefined;
}

/** The states of a node. */
export const NODE_STATES = ['Ready', 'Suspect', 'Down'] as const;
/** The state of a node as the manager sees it. */
export type NodeHealthState = (typeof NODE_STATES)[number];

/** What `/ferry/health/<node>` holds. */
export const NodeHealthSchema = Type.Object({
  state: Type.Union([Type.Literal('Ready'), Type.Literal('Suspect'), Type.Literal('Down')]),
  /** When the node entered this state (ISO time). */
  since: Type.String(),
  /** Why, in words (e.g. "no heartbeat for 6 s"). */
  reason: Type.String(),
});
/** What `/ferry/health/<node>` holds. */
export type NodeHealth = Static<typeof NodeHealthSchema>;

/** Detection timing: lease TTL (s) and the grace after it before Down; agents fence within the TTL. */
export interface DetectionTiming {
  /** Seconds without a heartbeat before the lease lapses (Suspect). */
  readonly leaseTtlSeconds: number;
  /** Seconds a node stays Suspect before it is Down and its containers fail over. */
  readonly graceSeconds: number;
}

/** Defaults: a lost node is Down 9 s after its last heartbeat (the issue asks ≤ 10 s). */
export const DEFAULT_DETECTION: DetectionTiming = { leaseTtlSeconds: 6, graceSeconds: 3 };

/**
 * How long a host may go without contact before its containers are killed (ms): the agent stamps the
 * time it *sent* each answered heartbeat, which is no later than the manager's renewal, and the manager
 * declares Down no sooner than TTL + grace after that renewal; the margin covers the shims' poll and
 * the kill.
 */
export function fenceAfterMs(leaseTtlSeconds: number, graceSeconds: number): number {
  return Math.max(1000, (leaseTtlSeconds + graceSeconds) * 1000 - FENCE_MARGIN_MS);
}

/** How long before the manager may declare a node Down its containers must be dead (kill + shim poll + clock steps). */
export const FENCE_MARGIN_MS = 2000;

/** The file beside a shared volume's data that names the epoch allowed to use it. */
export const FENCE_TOKEN_FILE = 'fence.json';

/** What a volume's fence token holds: the newest placement epoch of the container that uses it. */
export interface FenceToken {
  readonly container: string;
  readonly uid: string;
  readonly epoch: number;
  readonly node: string;
  readonly at: string;
}

/**
 * Whether a placement at `epoch` of container `uid` may open a volume whose token is `token`: only
 * when no newer epoch of the same container has taken it (another container's token is a different
 * owner: the caller refuses that separately).
 */
export function fenceAllows(token: FenceToken | undefined, uid: string, epoch: number): boolean {
  return token === undefined || token.uid !== uid || token.epoch <= epoch;
}
