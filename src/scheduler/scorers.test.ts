import { test } from 'node:test';
import assert from 'node:assert/strict';
import { place } from './placement.ts';
import { SCORERS } from './scorers.ts';
import { byNode, GiB, node } from './testing.ts';

const chosen = (d: ReturnType<typeof place>): string | undefined => (d.ok ? d.node : undefined);

test('the scorers by name', () => {
  assert.deepEqual(SCORERS.map((s) => s.name), ['least-allocated', 'most-allocated', 'service-spread', 'zone-spread', 'workload-mix']);
});

test('spread (least-allocated) by default vs binpack (most-allocated), per request', () => {
  const nodes = [node('a', { allocated: { cpus: 1.5, memoryBytes: 6 * GiB } }), node('b', { allocated: { cpus: 0.5, memoryBytes: 2 * GiB } }), node('c')];
  const spread = place({ name: 'x', cpus: 0.25, memoryBytes: GiB }, nodes);
  assert.equal(chosen(spread), 'c');
  assert.deepEqual(byNode(spread.verdicts).c!.scores, [{ plugin: 'least-allocated', raw: 100 * (1 - (0.25 / 2 + 1 / 8) / 2), score: 87.5, weight: 1 }]);
  const pack = place({ name: 'x', cpus: 0.25, memoryBytes: GiB, strategy: 'binpack' }, nodes);
  assert.equal(chosen(pack), 'a');
  assert.deepEqual(byNode(pack.verdicts).a!.scores!.map((s) => [s.plugin, s.score]), [['most-allocated', 100 * (1.75 / 2 + 7 / 8) / 2]]);
  // Bin-pack still only picks nodes the request fits on.
  assert.equal(chosen(place({ name: 'x', memoryBytes: 3 * GiB, strategy: 'binpack' }, nodes)), 'b');
});

test('anti-affinity: fewer replicas of the service on the node is better, normalized by the most', () => {
  const nodes = [node('a', { services: { web: 2 } }), node('b', { services: { web: 1, api: 5 } }), node('c', { services: { api: 9 } })];
  const d = place({ name: 'web-4', service: 'web' }, nodes);
  assert.equal(chosen(d), 'c');
  const spread = (n: string): number[] => byNode(d.verdicts)[n]!.scores!.filter((s) => s.plugin === 'service-spread').map((s) => s.raw).concat(byNode(d.verdicts)[n]!.scores!.filter((s) => s.plugin === 'service-spread').map((s) => s.score));
  assert.deepEqual([spread('a'), spread('b'), spread('c')], [[2, 0], [1, 50], [0, 100]]);
  assert.equal(byNode(d.verdicts).c!.scores!.find((s) => s.plugin === 'service-spread')!.weight, 2);
  // Another service's replicas do not count.
  assert.equal(chosen(place({ name: 'db-1', service: 'db' }, nodes)), 'a');
});

test('anti-affinity across zones: an empty zone beats a zone that already holds replicas', () => {
  const z = (zone: string, web = 0): Partial<Parameters<typeof node>[1]> => ({ labels: { 'ferry.io/zone': zone }, services: web ? { web } : {} });
  const nodes = [node('a1', z('a', 1)), node('a2', z('a')), node('b1', z('b'))];
  const d = place({ name: 'web-2', service: 'web' }, nodes);
  assert.equal(chosen(d), 'b1', 'a2 has no replica itself, but its zone has one');
  const zs = byNode(d.verdicts);
  assert.deepEqual([zs.a2!.scores!.find((s) => s.plugin === 'zone-spread')!.raw, zs.b1!.scores!.find((s) => s.plugin === 'zone-spread')!.raw], [1, 0]);
});

test('workload mixing: a CPU-bound container beside an IO-bound one scores better than beside another CPU-bound one', () => {
  const nodes = [node('cpu-host', { workloads: { cpu: 1 } }), node('io-host', { workloads: { io: 1 } })];
  const d = place({ name: 'crunch', workloadClass: 'cpu' }, nodes);
  assert.equal(chosen(d), 'io-host');
  const v = byNode(d.verdicts);
  const mix = (n: string): number => v[n]!.scores!.find((s) => s.plugin === 'workload-mix')!.score;
  assert.equal(mix('io-host'), 100);
  assert.equal(mix('cpu-host'), 0);
  assert.ok(v['io-host']!.score > v['cpu-host']!.score);
  // Mixing is by share: one CPU container among three IO ones is better company than a CPU-only node.
  const d2 = place({ name: 'crunch', workloadClass: 'cpu' }, [node('a', { workloads: { cpu: 1 } }), node('b', { workloads: { cpu: 1, io: 3 } })]);
  assert.equal(chosen(d2), 'b');
  assert.equal(byNode(d2.verdicts).b!.scores!.find((s) => s.plugin === 'workload-mix')!.score, 75);
  // An IO container prefers the CPU host, by the same rule.
  assert.equal(chosen(place({ name: 'logs', workloadClass: 'io' }, nodes)), 'cpu-host');
});

test('the score is the weighted mean of the plugins, and the reason spells it out', () => {
  const nodes = [node('a', { services: { web: 1 }, workloads: { io: 1 } }), node('b', { allocated: { cpus: 1, memoryBytes: 4 * GiB }, workloads: { cpu: 1 } })];
  const d = place({ name: 'web-2', service: 'web', workloadClass: 'cpu' }, nodes);
  const b = byNode(d.verdicts).b!;
  assert.deepEqual(b.scores!.map((s) => [s.plugin, s.score, s.weight]), [['least-allocated', 50, 1], ['service-spread', 100, 2], ['workload-mix', 0, 1]], 'no zone labels: no zone-spread');
  assert.equal(b.score, 62.5);
  assert.equal(b.reason, 'score 62.5: least-allocated 50×1, service-spread 100×2, workload-mix 0×1');
  const a = byNode(d.verdicts).a!;
  assert.equal(a.score, 50, '(100×1 + 0×2 + 100×1) / 4');
  assert.equal(chosen(d), 'b');
  assert.equal(d.reason, 'score 62.5: least-allocated 50×1, service-spread 100×2, workload-mix 0×1 (best of 2 feasible; examined 2 of 2 nodes)');
});
