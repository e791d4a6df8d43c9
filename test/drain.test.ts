/**
 * Draining a node of two simulated hosts (`ferry up --nodes 2`): `ferry node drain` cordons the
 * node, live-migrates its 5 running containers to the other node at most 2 at once (each
 * counter continues), skips a stopped one, and leaves the node unschedulable until `undrain`; with
 * nowhere to go every migration fails with the scheduler's reason and only the cordon changes.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import type { SimHostInfo, TestCluster } from './support/cluster.ts';
import { skipUnlessReady } from './support/prereq.ts';
import { counterAt, ipOf, MIGRATION_TOOLS, twoNodes } from './support/two-nodes.ts';
import { until } from './support/wait.ts';
import type { ContainerView } from '../src/model/index.ts';

const NAMES = ['c1', 'c2', 'c3', 'c4', 'c5'];

/** What `ferry -o json node drain` prints. */
interface DrainReport {
  node: string;
  unschedulable: boolean;
  results: { container: string; outcome: string; from: string; to?: string; migration?: string; freezeMs?: number; totalMs?: number; reason?: string }[];
  summary: { migrated: number; failed: number; skipped: number; elapsedMs: number };
}

describe('ferry node drain', { skip: skipUnlessReady(MIGRATION_TOOLS) }, () => {
  const two = twoNodes();
  let c: TestCluster;
  let a: SimHostInfo;
  let b: SimHostInfo;
  before(() => {
    ({ c, a, b } = two);
  });

  // The containers' overlay addresses (they keep them when they move); counters are read from host A.
  const ips = new Map<string, string>();
  const count = (name: string): Promise<number> => counterAt(c, ips.get(name)!);
  const unschedulable = async (node: string): Promise<boolean> => (await c.client.nodes.get(node)).node.spec.unschedulable;
  const nodeOf = async (name: string): Promise<[string | undefined, string | undefined, string | undefined]> => {
    const v = await c.client.containers.get(name);
    return [v.container.placement?.node, v.status?.node, v.status?.phase];
  };

  it('refuses bad input before changing anything', async () => {
    const cases: [string[], number, RegExp][] = [
      [['node', 'drain', 'ghost'], 4, /no node named "ghost"/],
      [['node', 'undrain', 'ghost'], 4, /no node named "ghost"/],
      [['node', 'drain', a.node, '--concurrency', '0'], 2, /--concurrency needs a positive whole number/],
      [['node', 'drain', a.node, '--timeout', 'soon'], 2, /invalid duration "soon"/],
    ];
    for (const [args, code, re] of cases) {
      const r = await c.cli(args);
      assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re);
    }
    assert.equal(await unschedulable(a.node), false);
  });

  it('drains a node with 5 containers: each moves live to the other node, at most 2 at once', async () => {
    await Promise.all([...NAMES, 'idle'].map((n) => c.client.containers.create({
      name: n, image: 'sample', node: a.node, resources: { memoryBytes: 64 * 1024 * 1024 },
    }, { wait: true })));
    await c.client.containers.stop('idle', { wait: true });
    for (const n of NAMES) ips.set(n, await ipOf(c, n));
    const before = new Map<string, number>();
    for (const n of NAMES) before.set(n, await count(n));
    // The agent reports whether CRIU can dump a container shortly after it starts; prechecks need it.
    for (const n of NAMES) await until(`${n} checked for CRIU`, async () => ((await c.client.containers.get(n)).status?.migratable?.ok ? true : undefined), 20_000);

    // Past --timeout nothing more starts: all fail, nothing moves, the node stays cordoned; a second drain moves what is left.
    const late = await c.cli(['node', 'drain', a.node, '--timeout', '1ms']);
    assert.equal(late.code, 1, late.stderr);
    assert.match(late.stdout, /c1: FAILED: not started: the drain's --timeout of 1ms passed/);
    assert.match(late.stdout, /migrated 0, failed 5, skipped 1/);
    for (const n of NAMES) assert.equal((await nodeOf(n))[0], a.node);
    assert.equal(await unschedulable(a.node), true);

    const r = await c.cli(['-o', 'json', 'node', 'drain', a.node, '--concurrency', '2']);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as DrainReport;
    assert.deepEqual(report.summary, { ...report.summary, migrated: 5, failed: 0, skipped: 1 });
    assert.equal(report.unschedulable, true);
    assert.deepEqual(report.results.map((x) => [x.container, x.outcome]), [...NAMES.map((n) => [n, 'migrated']), ['idle', 'skipped']].sort((x, y) => x[0]!.localeCompare(y[0]!)));
    for (const x of report.results.filter((y) => y.outcome === 'migrated')) {
      assert.equal(x.to, b.node);
      assert.ok(x.freezeMs! > 0 && x.totalMs! >= x.freezeMs!, JSON.stringify(x));
    }
    assert.match(report.results.find((x) => x.container === 'idle')!.reason!, /it is stopped: no process to move/);

    for (const n of NAMES) {
      assert.deepEqual(await nodeOf(n), [b.node, b.node, 'running'], n);
      assert.equal(await count(n), before.get(n)! + 1, `${n}'s counter continues where it was`);
    }

    // The scheduler chose the target and said why, setting aside the pin to the drained node.
    const migs = (await c.client.migrations.list()).filter((m) => report.results.some((x) => x.migration === m.metadata.name));
    assert.equal(migs.length, 5);
    for (const m of migs) assert.match(m.status.history[0]!.message ?? '', new RegExp(`^target ${b.node} chosen by the scheduler: .*its pin to ${a.node} is set aside`));
    // Bounded concurrency: no instant had more than 2 of them under way, and 2 did overlap.
    const edges = migs.flatMap((m) => [[Date.parse(m.metadata.createdAt), 1], [Date.parse(m.status.finishedAt!), -1]] as const).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    let live = 0;
    let most = 0;
    for (const [, d] of edges) most = Math.max(most, (live += d));
    assert.equal(most, 2, 'at most --concurrency migrations at once');

    assert.equal(await unschedulable(a.node), true);
    assert.match(await c.ok(['node', 'ls']), new RegExp(`${a.node}\\s+Ready,unschedulable`));
    assert.equal((await c.json<ContainerView>(['run', '--name', 'later', 'sample'])).container.placement?.node, b.node, 'a new container lands on the other node');
  });

  it('with nowhere to go, each migration fails with the scheduler\'s reason and only the cordon changes', async () => {
    const migrationsBefore = (await c.client.migrations.list()).length;
    const r = await c.cli(['node', 'drain', b.node]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, new RegExp(`node ${b.node} cordoned first`));
    for (const n of [...NAMES, 'later']) assert.match(r.stdout, new RegExp(`${n}: FAILED: no node can take container "${n}" from ${b.node}: ${a.node}: node is unschedulable \\(drained\\)`));
    assert.match(r.stdout, new RegExp(`migrated 0, failed 6, skipped 0 in .*undo with \`ferry node undrain ${b.node}\``));
    assert.equal((await c.client.migrations.list()).length, migrationsBefore, 'no migration was started');
    for (const n of [...NAMES, 'later']) assert.deepEqual(await nodeOf(n), [b.node, b.node, 'running'], n);
    assert.equal(await unschedulable(b.node), true);

    for (const n of [a.node, b.node]) assert.match(await c.ok(['node', 'undrain', n]), new RegExp(`node ${n} is schedulable`));
    assert.deepEqual([await unschedulable(a.node), await unschedulable(b.node)], [false, false]);
    assert.doesNotMatch(await c.ok(['node', 'ls']), /unschedulable/);
  });
});
