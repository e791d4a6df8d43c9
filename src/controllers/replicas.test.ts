import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { planReplicas, type ReplicaState } from './replicas.ts';

const r = (name: string, revision: string, ready = true, createdAt = name): ReplicaState => ({ name, revision, ready, createdAt });
const goal = (replicas: number, o: Partial<{ maxSurge: number; maxUnavailable: number; deleting: boolean }> = {}) =>
  ({ replicas, revision: 'new', maxSurge: o.maxSurge ?? 1, maxUnavailable: o.maxUnavailable ?? 0, deleting: o.deleting });

/** Applies plans until nothing changes, new replicas becoming ready at once; returns every state seen. */
function rollout(g: ReturnType<typeof goal>, start: ReplicaState[]): ReplicaState[][] {
  let live = start;
  const seen = [live];
  for (let i = 0, k = 0; i < 50; i++) {
    const p = planReplicas(g, live);
    if (p.create === 0 && p.retire.length === 0) return seen;
    live = [...live.filter((x) => !p.retire.includes(x.name)), ...Array.from({ length: p.create }, () => r(`n${k++}`, 'new', false, `z${k}`))];
    seen.push(live);
    live = live.map((x) => ({ ...x, ready: true }));
    seen.push(live);
  }
  throw new Error('no convergence');
}

describe('planReplicas', () => {
  it('scales up and down, retiring unready then newest replicas first', () => {
    assert.deepEqual(planReplicas(goal(3), [r('a', 'new')]), { create: 2, retire: [], reason: 'scaling up: 1 of 3 replicas' });
    const p = planReplicas(goal(1), [r('a', 'new', true, '1'), r('b', 'new', true, '3'), r('c', 'new', false, '2')]);
    assert.deepEqual(p.retire, ['c', 'b']);
    assert.equal(planReplicas(goal(2), [r('a', 'new'), r('b', 'new')]).reason, 'up to date');
  });

  it('a service being removed retires everything', () => {
    assert.deepEqual(planReplicas(goal(3, { deleting: true }), [r('a', 'new'), r('b', 'old')]).retire, ['a', 'b']);
  });

  it('rolls with max-surge 1, max-unavailable 0: never fewer than the wanted ready replicas, never more than one extra', () => {
    const states = rollout(goal(3), [r('a', 'old'), r('b', 'old'), r('c', 'old')]);
    for (const s of states) {
      assert.ok(s.length <= 4, `at most 4 replicas: ${s.map((x) => x.name).join(',')}`);
      assert.ok(s.filter((x) => x.ready).length >= 3 || s.length > 3, 'ready count never drops below 3');
    }
    const end = states.at(-1)!;
    assert.equal(end.length, 3);
    assert.ok(end.every((x) => x.revision === 'new'));
  });

  it('rolls with max-surge 0, max-unavailable 1: removes first, never more than the wanted count', () => {
    const states = rollout(goal(2, { maxSurge: 0, maxUnavailable: 1 }), [r('a', 'old'), r('b', 'old')]);
    for (const s of states) assert.ok(s.length <= 2);
    assert.ok(states.at(-1)!.every((x) => x.revision === 'new'));
  });

  it('keeps old ready replicas while new ones are not ready', () => {
    const p = planReplicas(goal(2), [r('a', 'old'), r('b', 'old'), r('n', 'new', false)]);
    assert.deepEqual(p, { create: 0, retire: [], reason: 'rolling update to new: 0 of 2 new replicas ready, 2 old left' });
  });

  it('old replicas that are not ready go at once', () => {
    assert.deepEqual(planReplicas(goal(2), [r('a', 'old', false), r('b', 'old')]).retire, ['a']);
  });

  it('a scale-down during a rollout trims the new replicas to the wanted count', () => {
    const p = planReplicas(goal(1), [r('a', 'old'), r('n1', 'new'), r('n2', 'new')]);
    assert.deepEqual(p.retire.sort(), ['a', 'n2']);
  });
});
