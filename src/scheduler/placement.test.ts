import { test } from 'node:test';
import assert from 'node:assert/strict';
import { place, placeEvacuee, type NodeSnapshot } from './index.ts';

const GiB = 1024 ** 3;
const node = (name: string, o: Partial<NodeSnapshot> = {}): NodeSnapshot => ({
  name, ready: true, unschedulable: false, labels: {},
  capacity: { cpus: 2, memoryBytes: 8 * GiB }, allocated: { cpus: 0, memoryBytes: 0 }, ...o,
});

test('picks the least allocated ready node and explains it', () => {
  const d = place({ name: 'web', memoryBytes: GiB }, [node('a', { allocated: { cpus: 1, memoryBytes: 4 * GiB } }), node('b')]);
  assert.equal(d.ok, true);
  assert.equal(d.ok && d.node, 'b');
  assert.match(d.reason, /^score [\d.]+: least-allocated [\d.]+×1 \(best of 2 feasible; examined 2 of 2 nodes\)$/);
});

test('filters: not ready, drained, pinned elsewhere, no memory, no cpu', () => {
  const d = place({ name: 'web', memoryBytes: 4 * GiB, cpus: 1.5, node: 'e' }, [
    node('a', { ready: false }), node('b', { unschedulable: true }), node('c'),
    node('e', { allocated: { cpus: 1, memoryBytes: 6 * GiB } }),
  ]);
  assert.equal(d.ok, false);
  const why = Object.fromEntries(d.verdicts.map((v) => [v.node, v.reason]));
  assert.equal(why.a, 'node is not ready');
  assert.match(why.b!, /unschedulable/);
  assert.match(why.c!, /pinned to node e/);
  assert.match(why.e!, /not enough memory/);
  assert.match(d.reason, /a: node is not ready/);
});

test('ties break by name so the same input gives the same answer', () => {
  const nodes = [node('z'), node('m'), node('a')];
  for (let i = 0; i < 5; i++) assert.equal((place({ name: 'x' }, nodes) as { node: string }).node, 'a');
});

test('no nodes: a clear reason', () => {
  const d = place({ name: 'x' }, []);
  assert.deepEqual([d.ok, d.reason], [false, 'no nodes have registered']);
});

test('evacuee: never back to its own node; a pin to that node is set aside and said so', () => {
  const d = placeEvacuee({ name: 'web', node: 'a' }, 'a', [node('a'), node('b', { allocated: { cpus: 1, memoryBytes: GiB } }), node('c', { unschedulable: true })]);
  assert.equal(d.ok && d.node, 'b');
  assert.match(d.reason, /best of 1 feasible; examined 2 of 2 nodes\); its pin to a is set aside/);
  assert.deepEqual(d.verdicts.map((v) => v.node).sort(), ['b', 'c'], 'the source is not a candidate');
});

test('evacuee: a pin to another node still holds', () => {
  const d = placeEvacuee({ name: 'web', node: 'c' }, 'a', [node('a'), node('b'), node('c')]);
  assert.equal(d.ok && d.node, 'c');
  assert.doesNotMatch(d.reason, /set aside/);
});

test('evacuee: containers already migrating to a node count against its capacity', () => {
  const nodes = [node('a'), node('b'), node('c', { allocated: { cpus: 0, memoryBytes: 2 * GiB } })];
  assert.equal((placeEvacuee({ name: 'x', memoryBytes: GiB }, 'a', nodes) as { node: string }).node, 'b');
  const d = placeEvacuee({ name: 'x', memoryBytes: GiB }, 'a', nodes, [{ node: 'b', memoryBytes: 2 * GiB }, { node: 'b', cpus: 1 }]);
  assert.equal(d.ok && d.node, 'c');
  const full = placeEvacuee({ name: 'x', memoryBytes: 7 * GiB }, 'a', nodes, [{ node: 'b', memoryBytes: 2 * GiB }]);
  assert.equal(full.ok, false);
  assert.match(full.reason, /b: not enough memory.*c: not enough memory/);
});

test('evacuee: the only node has nowhere to go, with a reason', () => {
  const d = placeEvacuee({ name: 'x' }, 'a', [node('a')]);
  assert.deepEqual([d.ok, d.reason], [false, 'no node other than a has registered']);
  const cordoned = placeEvacuee({ name: 'x' }, 'a', [node('a'), node('b', { unschedulable: true })]);
  assert.deepEqual([cordoned.ok, cordoned.reason], [false, 'b: node is unschedulable (drained)']);
});
