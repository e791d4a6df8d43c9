import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isFerryError } from '../errors/index.ts';
import { place } from './placement.ts';
import { FILTERS } from './filters.ts';
import { byNode, GiB, node } from './testing.ts';
import type { PlacementRequest, NodeSnapshot } from './types.ts';

/** The filter name and reason of each rejected node, and the feasible ones. */
function run(req: PlacementRequest, nodes: NodeSnapshot[]): { rejected: Record<string, [string | undefined, string]>; feasible: string[] } {
  const d = place(req, nodes);
  const v = byNode(d.verdicts);
  return {
    rejected: Object.fromEntries(Object.values(v).filter((x) => !x.feasible).map((x) => [x.node, [x.filter, x.reason]])),
    feasible: Object.values(v).filter((x) => x.feasible).map((x) => x.node).sort(),
  };
}

test('the filters, in their order, by name', () => {
  assert.deepEqual(FILTERS.map((f) => f.name), ['node-ready', 'node-schedulable', 'pinned-node', 'topology', 'constraints', 'one-per-host', 'resources-fit']);
  for (const f of FILTERS) assert.ok(f.description.length > 10, f.name);
});

test('node-ready and node-schedulable', () => {
  const r = run({ name: 'x' }, [node('a', { ready: false }), node('b', { unschedulable: true }), node('c', { ready: false, unschedulable: true }), node('d')]);
  assert.deepEqual(r.rejected, {
    a: ['node-ready', 'node is not ready'],
    b: ['node-schedulable', 'node is unschedulable (drained)'],
    c: ['node-ready', 'node is not ready'],
  });
  assert.deepEqual(r.feasible, ['d']);
});

test('pinned-node: only the pinned node; a pin to an unknown node fits nothing', () => {
  assert.deepEqual(run({ name: 'x', node: 'b' }, [node('a'), node('b')]), { rejected: { a: ['pinned-node', 'container is pinned to node b'] }, feasible: ['b'] });
  const d = place({ name: 'x', node: 'zz' }, [node('a')]);
  assert.deepEqual([d.ok, d.reason], [false, 'a: container is pinned to node zz']);
});

test('resources-fit: memory, then CPU, against capacity minus allocation', () => {
  const r = run({ name: 'x', memoryBytes: 4 * GiB, cpus: 1.5 }, [
    node('a', { allocated: { cpus: 0, memoryBytes: 5 * GiB } }),
    node('b', { allocated: { cpus: 1, memoryBytes: 0 } }),
    node('c', { allocated: { cpus: 0.5, memoryBytes: 4 * GiB } }),
  ]);
  assert.deepEqual(r.rejected, {
    a: ['resources-fit', `not enough memory: needs ${4 * GiB} B, ${3 * GiB} B free`],
    b: ['resources-fit', 'not enough CPU: needs 1.5, 1.00 free'],
  });
  assert.deepEqual(r.feasible, ['c'], 'an exact fit fits');
});

test('topology: region and zone against ferry.io/region and ferry.io/zone', () => {
  const at = (region?: string, zone?: string): Record<string, string> => ({ ...(region ? { 'ferry.io/region': region } : {}), ...(zone ? { 'ferry.io/zone': zone } : {}) });
  const nodes = [node('a', { labels: at('eu', 'eu-1') }), node('b', { labels: at('eu', 'eu-2') }), node('c', { labels: at('us', 'us-1') }), node('d')];
  assert.deepEqual(run({ name: 'x', region: 'eu' }, nodes), {
    rejected: { c: ['topology', 'node is in region us (wants region eu)'], d: ['topology', 'node has no ferry.io/region label (wants region eu)'] },
    feasible: ['a', 'b'],
  });
  const z = run({ name: 'x', region: 'eu', zone: 'eu-2' }, nodes);
  assert.deepEqual(z.feasible, ['b']);
  assert.deepEqual(z.rejected.a, ['topology', 'node is in zone eu-1 (wants zone eu-2)']);
  assert.deepEqual(z.rejected.c, ['topology', 'node is in region us (wants region eu)']);
});

test('constraints: every one must hold; the first that fails is the reason', () => {
  const nodes = [
    node('a', { labels: { 'ferry.io/region': 'eu', disk: 'ssd', gpu: 'a100' } }),
    node('b', { labels: { 'ferry.io/region': 'eu', disk: 'hdd' } }),
    node('c', { labels: { 'ferry.io/region': 'us', disk: 'ssd' } }),
    node('d', { labels: { 'ferry.io/region': 'eu' } }),
  ];
  assert.deepEqual(run({ name: 'x', constraints: ['region==eu', 'disk!=hdd'] }, nodes), {
    rejected: {
      b: ['constraints', "constraint disk!=hdd not met: the node's disk is hdd"],
      c: ['constraints', "constraint region==eu not met: the node's ferry.io/region is us"],
    },
    feasible: ['a', 'd'],
  });
  assert.deepEqual(run({ name: 'x', constraints: ['gpu'] }, nodes).feasible, ['a']);
  assert.deepEqual(run({ name: 'x', constraints: ['!gpu'] }, nodes).feasible, ['b', 'c', 'd']);
});

test('one-per-host: a onePerHost replica refuses nodes with a replica of its service; without onePerHost it does not', () => {
  const nodes = [node('a', { services: { web: 1 } }), node('b', { services: { api: 3 } }), node('c')];
  assert.deepEqual(run({ name: 'web-2', service: 'web', onePerHost: true }, nodes), {
    rejected: { a: ['one-per-host', 'node already runs 1 replica(s) of service web (one per host)'] },
    feasible: ['b', 'c'],
  });
  assert.deepEqual(run({ name: 'web-2', service: 'web' }, nodes).feasible, ['a', 'b', 'c']);
  const full = place({ name: 'web-4', service: 'web', onePerHost: true }, [node('a', { services: { web: 1 } })]);
  assert.equal(full.ok, false);
  assert.match(full.reason, /^a: node already runs 1 replica\(s\) of service web \(one per host\)$/);
});

test('a malformed request fails with the error and no verdicts, never a throw', () => {
  for (const [req, code] of [
    [{ name: 'x', constraints: ['disk=ssd'] }, 'SCHEDULER_BAD_CONSTRAINT'],
    [{ name: 'x', workloadClass: 'gpu' }, 'SCHEDULER_BAD_WORKLOAD_CLASS'],
    [{ name: 'x', strategy: 'random' as 'spread' }, 'SCHEDULER_BAD_STRATEGY'],
  ] as const) {
    const d = place(req, [node('a')]);
    assert.equal(d.ok, false);
    assert.ok(!d.ok && isFerryError(d.error, code), code);
    assert.match(d.reason, /^invalid request: invalid /);
    assert.deepEqual(d.verdicts, []);
  }
});
