/**
 * Post-copy live migration between two simulated hosts: the container runs on the target
 * right after a dump without memory, its pages follow from the source's CRIU page server, and the
 * source copy goes only once every page has arrived. Its counter continues; nothing is left behind.
 * A target agent killed right after its restore rolls the migration back to the intact source. A
 * non-root workload (uid 999, as PostgreSQL runs) moves with stop-copy and post-copy alike. The
 * three describes share one cluster, each finding it clean.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { skipUnlessReady } from './support/prereq.ts';
import { until } from './support/wait.ts';
import { assertOwnCgroups, migrateRolledBack, MIGRATION_TOOLS, migrationFilesOn, onSharedCluster, runCounter, runcIdsOn, twoNodes } from './support/two-nodes.ts';
import type { ContainerView, Migration } from '../src/model/index.ts';

describe('post-copy on two simulated hosts', { skip: skipUnlessReady(MIGRATION_TOOLS) }, () => {
  const n = twoNodes();

  describe('live migration between two nodes (post-copy)', () => {
    onSharedCluster(n);

    it('moves a container with 64 MiB of memory being rewritten there and back; its counter continues', async () => {
      const { c, a, b } = n;
      const count = await runCounter(c, 'pc', a.node, ['--memory', '256m', '-e', 'BALLAST_MB=64', '-e', 'DIRTY_PCT_PER_SEC=5']);
      let last = await count();
      for (const to of [b.node, a.node]) {
        const m = await c.json<Migration>(['migrate', 'pc', '--to', to, '--strategy', 'post-copy']);
        assert.equal(m.status.phase, 'Succeeded', `${m.status.error ?? ''}`);
        assert.equal(m.status.strategy, 'post-copy');
        assert.ok(m.status.checks.some((k) => k.check === 'post-copy-risk' && k.ok), 'the prechecks state the post-copy risk');
        assert.deepEqual(m.status.history.map((h) => h.phase), ['Pending', 'Precheck', 'Prepare', 'Freeze', 'Transfer', 'Restore', 'Switch', 'Cleanup', 'Succeeded']);
        const v = await c.json<ContainerView>(['inspect', 'pc']);
        assert.deepEqual([v.container.placement?.node, v.status?.node, v.status?.phase], [to, to, 'running']);
        const now = await count();
        assert.equal(now, last + 1, 'the counter continued: no reset, no lost request');
        last = now;
        assert.deepEqual(c.hosts.flatMap(runcIdsOn), [v.status!.runtimeId], 'only the target copy is left once every page arrived');
        assertOwnCgroups(to === a.node ? a : b, v.status!.runtimeId, 256);
        process.stdout.write(`# post-copy to ${to}: freeze ${m.status.freezeMs} ms, total ${m.status.totalMs} ms, ${m.status.bytes} bytes sent before the switch\n`);
      }
      for (const x of c.hosts) assert.deepEqual(migrationFilesOn(x), [], `no migration files left on ${x.node}`);
      await c.ok(['rm', '-f', 'pc']);
    });
  });

  describe('post-copy: target agent killed right after its restore', () => {
    onSharedCluster(n, { b: 'migrate:after-restore' });

    it('rolls back: the source stops serving pages and runs on; the returning target removes its copy', async () => {
      const { c, a, b } = n;
      const count = await runCounter(c, 'web', a.node, ['-e', 'BALLAST_MB=16']);
      assert.equal(await count(), 1);
      await migrateRolledBack(c, 'web', b.node, 'Restore', ['--strategy', 'post-copy']);
      // The source copy was never destroyed (even though the target had pulled its pages): thawed,
      // the same process counts on.
      assert.equal(await count(), 2);
      const v = await c.json<ContainerView>(['inspect', 'web']);
      assert.deepEqual([v.container.placement?.node, v.status?.phase], [a.node, 'running']);
      await b.restartAgent();
      await until('the copy on the target to be removed', () => (runcIdsOn(b).length === 0 ? true : undefined), 90_000);
      assert.deepEqual(runcIdsOn(a), [v.status!.runtimeId]);
      assert.equal(await count(), 3);
      await c.ok(['rm', '-f', 'web']);
    });
  });

  describe('a non-root workload (uid 999, like PostgreSQL) migrates with both strategies', () => {
    onSharedCluster(n);

    it('keeps its state through stop-copy there and post-copy back, still running as uid 999', async () => {
      const { c, a, b } = n;
      const count = await runCounter(c, 'pg', a.node, ['--user', '999:999', '-e', 'PORT=8080', '-e', 'BALLAST_MB=32'], 8080);
      let last = await count();
      for (const [to, strategy] of [[b.node, 'stop-copy'], [a.node, 'post-copy']] as const) {
        const m = await c.json<Migration>(['migrate', 'pg', '--to', to, '--strategy', strategy]);
        assert.equal(m.status.phase, 'Succeeded', `${strategy}: ${m.status.error ?? ''}`);
        const now = await count();
        assert.equal(now, last + 1, `${strategy}: the counter continued`);
        last = now;
        const who = await c.ok(['exec', 'pg', '--', 'sh', '-c', 'id -u; id -g']);
        assert.deepEqual(who.trim().split('\n'), ['999', '999'], `${strategy}: the process still runs as 999:999 inside`);
      }
      await c.ok(['rm', '-f', 'pg']);
    });
  });
});
