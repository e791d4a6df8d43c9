/**
 * What a service's replicas need next: pure, no I/O. Scaling creates or retires replicas; a new
 * template rolls them the way a Kubernetes Deployment does, bounded by max-surge (extra replicas
 * while rolling) and max-unavailable (how far below the wanted count the ready ones may drop).
 */

/** One live replica (not retiring, not being removed). */
export interface ReplicaState {
  readonly name: string;
  readonly revision: string;
  /** Running the generation it was given. */
  readonly ready: boolean;
  readonly createdAt: string;
}

/** What the service wants. */
export interface ReplicaGoal {
  readonly replicas: number;
  readonly revision: string;
  readonly maxSurge: number;
  readonly maxUnavailable: number;
  /** The service is being removed: every replica goes. */
  readonly deleting?: boolean;
}

/** The next step: how many new replicas to create, which to retire (drain, then remove), and why. */
export interface ReplicaPlan {
  readonly create: number;
  readonly retire: string[];
  readonly reason: string;
}

/** Retire first the replicas that serve nobody, then the newest (the oldest have proven themselves). */
function retireOrder(a: ReplicaState, b: ReplicaState): number {
  return Number(a.ready) - Number(b.ready) || b.createdAt.localeCompare(a.createdAt) || b.name.localeCompare(a.name);
}

/** Plans one step towards `goal` from the `live` replicas. */
export function planReplicas(goal: ReplicaGoal, live: readonly ReplicaState[]): ReplicaPlan {
  if (goal.deleting) return { create: 0, retire: live.map((r) => r.name), reason: 'the service is being removed' };
  const n = goal.replicas;
  const cur = live.filter((r) => r.revision === goal.revision);
  const old = live.filter((r) => r.revision !== goal.revision);
  if (old.length === 0) {
    if (cur.length < n) return { create: n - cur.length, retire: [], reason: `scaling up: ${cur.length} of ${n} replicas` };
    if (cur.length > n) return { create: 0, retire: [...cur].sort(retireOrder).slice(0, cur.length - n).map((r) => r.name), reason: `scaling down: ${cur.length} replicas, ${n} wanted` };
    return { create: 0, retire: [], reason: 'up to date' };
  }
  // Rolling: new replicas up to the surge; old ones go while enough stay ready.
  const create = Math.max(0, Math.min(n - cur.length, n + goal.maxSurge - live.length));
  const minAvailable = Math.max(0, n - goal.maxUnavailable);
  let available = live.filter((r) => r.ready).length;
  const retire: string[] = [];
  // Old replicas beyond what the wanted count needs go first when new ones are ready to take over.
  for (const r of [...old].sort(retireOrder)) {
    if (!r.ready) retire.push(r.name);
    else if (available - 1 >= minAvailable) {
      retire.push(r.name);
      available -= 1;
    }
  }
  // New replicas beyond the wanted count (a scale-down during a rollout).
  const extraCur = cur.length + create - n;
  if (extraCur > 0) retire.push(...[...cur].sort(retireOrder).slice(0, extraCur).map((r) => r.name));
  const readyNew = cur.filter((r) => r.ready).length;
  return { create, retire, reason: `rolling update to ${goal.revision}: ${readyNew} of ${n} new replicas ready, ${old.length} old left` };
}
