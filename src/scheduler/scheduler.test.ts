import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Scheduler } from './scheduler.ts';
import { place } from './placement.ts';
import { byNode, GiB, node } from './testing.ts';
import type { NodeSnapshot, PlacementRequest } from './types.ts';

const pad = (i: number): string => `n${String(i).padStart(4, '0')}`;
/** `n` nodes, every third in region eu, zones eu-a/eu-b/us-a, every fifth with an SSD. */
function cluster(n: number, o: (i: number) => Partial<NodeSnapshot> = () => ({})): NodeSnapshot[] {
  return Array.from({ length: n }, (_, i) => node(pad(i), {
    capacity: { cpus: 8, memoryBytes: 32 * GiB },
    labels: { 'ferry.io/region': i % 3 === 0 ? 'eu' : 'us', 'ferry.io/zone': i % 3 === 0 ? (i % 2 ? 'eu-a' : 'eu-b') : 'us-a', ...(i % 5 === 0 ? { disk: 'ssd' } : {}) },
    ...o(i),
  }));
}

test('place() commits: allocation and replica counts move with each placement, no rebuild', () => {
  const s = new Scheduler([node('a'), node('b')]);
  const picks = [1, 2, 3, 4].map((k) => s.place({ name: `web-${k}`, service: 'web', cpus: 0.5, memoryBytes: GiB }));
  assert.deepEqual(picks.map((d) => d.ok && d.node), ['a', 'b', 'a', 'b'], 'replicas alternate');
  assert.deepEqual([...s.state.allocCpu], [1, 1]);
  assert.deepEqual([...s.state.serviceNodes('web')], [[0, 2], [1, 2]]);
  const full = s.place({ name: 'big', cpus: 1.5 });
  assert.equal(full.ok, false);
  assert.match(full.reason, /^a: not enough CPU: needs 1.5, 1.00 free; b: not enough CPU/);
  // decide() looks without recording.
  s.decide({ name: 'peek', cpus: 1 });
  assert.deepEqual([...s.state.allocCpu], [1, 1]);
  s.release('a', { cpus: 0.5, memoryBytes: GiB, service: 'web' });
  assert.deepEqual([...s.state.serviceNodes('web')], [[0, 1], [1, 2]]);
  assert.equal(s.place({ name: 'web-5', service: 'web' }).ok && s.state.allocCpu[0], 0.5);
});

test('one-per-host through a stream: each replica on its own node, then no room, with the reason', () => {
  const s = new Scheduler(cluster(3));
  const nodes = [1, 2, 3].map((k) => s.place({ name: `db-${k}`, service: 'db', onePerHost: true }));
  assert.deepEqual(nodes.map((d) => d.ok && d.node).sort(), ['n0000', 'n0001', 'n0002']);
  const d = s.place({ name: 'db-4', service: 'db', onePerHost: true });
  assert.equal(d.ok, false);
  assert.deepEqual(d.rejected, { 'node-ready': 0, 'node-schedulable': 0, 'one-per-host': 3 });
});

test('sampling: a bounded number of feasible nodes is scored, the explanation says how many were examined', () => {
  const s = new Scheduler(cluster(1000), { scoreLimit: 10 });
  const d = s.decide({ name: 'x' });
  assert.ok(d.ok);
  assert.deepEqual([d.examined, d.feasibleCount, d.sampled, d.total], [10, 10, true, 1000]);
  assert.match(d.reason, /\(best of 10 feasible; sampled 10 of 1000 nodes, the scan stopping at 10 feasible\)$/);
  assert.equal(d.verdicts.length, 10);
  // The cursor rotates: the next decision looks at the next slice.
  const next = s.decide({ name: 'y' });
  assert.deepEqual(next.verdicts.map((v) => v.node).sort()[0], 'n0010');
});

test('sampling never returns an infeasible node and finds the one feasible node wherever it is', () => {
  for (const where of [0, 1, 499, 998, 999]) {
    const nodes = cluster(1000, (i) => (i === where ? {} : { allocated: { cpus: 7.5, memoryBytes: 0 } }));
    const s = new Scheduler(nodes, { scoreLimit: 5 });
    for (let k = 0; k < 3; k++) {
      const d = s.decide({ name: `x${k}`, cpus: 1 });
      assert.ok(d.ok, `node ${where}, try ${k}`);
      assert.equal(d.node, pad(where));
      assert.equal(d.feasibleCount, 1);
      assert.equal(d.examined, 1000);
    }
  }
  // Randomized cluster: every chosen node passes every filter, checked against the full scan's verdicts.
  let seed = 7;
  const rnd = (): number => ((seed = (seed * 48271) % 2147483647) / 2147483647);
  const nodes = cluster(300, () => ({ ready: rnd() > 0.1, unschedulable: rnd() < 0.1, allocated: { cpus: Math.floor(rnd() * 8), memoryBytes: Math.floor(rnd() * 32) * GiB } }));
  const sampled = new Scheduler(nodes, { scoreLimit: 3 });
  for (let k = 0; k < 300; k++) {
    const req: PlacementRequest = { name: `r${k}`, cpus: 1 + (k % 4), memoryBytes: (k % 9) * GiB, constraints: k % 3 ? ['disk==ssd'] : ['region!=eu'] };
    const full = place(req, nodes);
    const d = sampled.decide(req);
    assert.equal(d.ok, full.ok, `request ${k}`);
    if (d.ok) assert.equal(byNode(full.verdicts)[d.node]!.feasible, true, `request ${k} got ${d.node}`);
  }
});

test('an exact index skips the nodes a pin or a label value rules out, and counts them under that filter', () => {
  const s = new Scheduler(cluster(300), { scoreLimit: 5 });
  const pinned = s.decide({ name: 'x', node: 'n0123' });
  assert.deepEqual([pinned.ok && pinned.node, pinned.examined, pinned.rejected['pinned-node']], ['n0123', 1, 299]);
  assert.match(pinned.reason, /\(best of 1 feasible; examined 1 of 300 nodes; 299 ruled out by the pinned-node index\)$/);
  const eu = s.decide({ name: 'y', constraints: ['region==eu', 'disk==ssd'] });
  assert.ok(eu.ok);
  // The smaller index (disk==ssd, 60 nodes) is walked: 240 ruled out unseen, and the walk's misses (region!=eu) added.
  assert.equal(eu.rejected.constraints, 240 + eu.examined - 5);
  assert.match(eu.reason, /; sampled \d+ of 300 nodes, the scan stopping at 5 feasible; 240 ruled out by the constraints index\)$/);
  assert.ok(eu.verdicts.filter((v) => v.feasible).every((v) => ['0', '5'].includes(v.node.slice(-1)) && Number(v.node.slice(1)) % 3 === 0));
  const zone = s.decide({ name: 'z', zone: 'eu-a' });
  assert.deepEqual([zone.ok, zone.rejected.topology], [true, 250]);
  const nowhere = s.decide({ name: 'w', region: 'mars' });
  assert.deepEqual([nowhere.ok, nowhere.examined, nowhere.reason], [false, 0, 'none of 300 nodes fits: topology 300']);
});

test('decisions are deterministic: same nodes and requests give the same nodes, scores and explanations', () => {
  const stream: PlacementRequest[] = Array.from({ length: 200 }, (_, k) => ({
    name: `c${k}`, service: `svc-${k % 7}`, onePerHost: k % 7 === 3, cpus: 0.25 * (1 + (k % 3)), memoryBytes: (1 + (k % 4)) * GiB,
    workloadClass: ['cpu', 'io', 'memory', 'network'][k % 4], strategy: k % 5 === 0 ? 'binpack' : 'spread',
    constraints: k % 6 === 0 ? ['region==eu'] : k % 6 === 1 ? ['disk!=ssd'] : undefined,
  }));
  const run = (): string => {
    const s = new Scheduler(cluster(60).reverse(), { scoreLimit: 8 });
    return JSON.stringify(stream.map((r) => s.place(r)));
  };
  const a = run();
  assert.equal(a, run());
  const parsed = JSON.parse(a) as { ok: boolean; verdicts: unknown[] }[];
  assert.ok(parsed.every((d) => d.ok && d.verdicts.length > 0), 'JSON carries the verdicts');
  // Ties break by name whatever the input order.
  const tie = place({ name: 'x' }, [node('z'), node('m'), node('a')]);
  assert.deepEqual([tie.ok && tie.node, tie.verdicts.map((v) => v.node).join()], ['a', 'a,m,z']);
});

test('verdicts read later say what was true at the decision', () => {
  const s = new Scheduler([node('a', { allocated: { cpus: 1, memoryBytes: 0 } }), node('b')]);
  const first = s.place({ name: 'x', cpus: 1.5 });
  const second = s.place({ name: 'y', cpus: 1 });
  assert.equal(second.ok && second.node, 'a');
  assert.deepEqual(byNode(first.verdicts).a!.reason, 'not enough CPU: needs 1.5, 1.00 free');
  assert.equal(byNode(first.verdicts).b!.scores![0]!.score, 62.5, 'b as it was: empty');
  assert.equal(byNode(second.verdicts).b!.reason, 'not enough CPU: needs 1, 0.50 free');
});

test('updateNode: a drained node is skipped, its load and replicas kept; a new zone moves its replicas', () => {
  const s = new Scheduler([node('a', { labels: { 'ferry.io/zone': 'z1' } }), node('b', { labels: { 'ferry.io/zone': 'z1' } })]);
  s.place({ name: 'w1', service: 'w', cpus: 1 });
  s.updateNode(node('a', { unschedulable: true, labels: { 'ferry.io/zone': 'z2' } }));
  assert.deepEqual([...s.state.serviceZones('w')], [['z2', 1]]);
  const d = s.decide({ name: 'w2', service: 'w' });
  assert.deepEqual([d.ok && d.node, byNode(d.verdicts).a!.filter], ['b', 'node-schedulable']);
  assert.equal(s.state.allocCpu[0], 1);
});

test('an empty scheduler and duplicate names', () => {
  assert.deepEqual([new Scheduler([]).place({ name: 'x' }).reason], ['no nodes have registered']);
  const s = new Scheduler([node('a', { ready: false }), node('a')]);
  assert.equal(s.state.size, 1, 'the last snapshot of a name wins');
  assert.equal(s.decide({ name: 'x' }).ok, true);
});
