/**
 * The manager killed (SIGKILL) in the middle of a live migration. Before the switch: the restarted
 * manager finds the migration unfinished and rolls it back (recover()); the agents, which carried on
 * alone meanwhile, undo their parts; the container runs exactly once, where it was, its state intact.
 * Right after the switch: the restarted manager finishes it; the container runs once, on the target.
 * Both describes share one two-host cluster.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { skipUnlessReady } from './support/prereq.ts';
import { until } from './support/wait.ts';
import { MIGRATION_TOOLS, migrationEnd, migrationFilesOn, onSharedCluster, runCounter, runcIdsOn, twoNodes } from './support/two-nodes.ts';
import type { ContainerView } from '../src/model/index.ts';

describe('the manager killed during migrations, on two simulated hosts', { skip: skipUnlessReady(MIGRATION_TOOLS) }, () => {
  const n = twoNodes();

  describe('manager killed during a migration', () => {
    onSharedCluster(n);

    it('the restarted manager rolls the migration back; the container runs once, on the source', async () => {
      const { c, a, b } = n;
      const count = await runCounter(c, 'web', a.node, ['-e', 'BALLAST_MB=64']);
      assert.equal(await count(), 1);
      // A slow pre-copy round (64 MiB at 2 MiB/s) gives a wide window to kill the manager in.
      const created = await c.client.migrations.create({ container: 'web', to: b.node, strategy: 'pre-copy', bandwidthBytesPerSec: 2 * 1024 * 1024 });
      const id = created.metadata.name;
      await until('the migration to copy', async () => ((await c.client.migrations.get(id)).status.phase === 'Copy' ? true : undefined));
      const pid = c.managerPid();
      assert.ok(pid, 'the manager runs');
      process.kill(pid, 'SIGKILL');
      await until('the manager to be gone', () => (c.managerPid() === undefined ? true : undefined));
      await c.restartManager();
      const m = await migrationEnd(c, id);
      assert.equal(m.status.phase, 'RolledBack', JSON.stringify(m.status));
      assert.match(m.status.error ?? '', /interrupted in Copy/);
      assert.ok(m.status.history.some((h) => h.message === 'recovered after a restart'), 'the new manager recovered it');
      const v = await c.json<ContainerView>(['inspect', 'web']);
      assert.deepEqual([v.container.placement?.node, v.status?.phase], [a.node, 'running']);
      assert.equal(await count(), 2, 'the same process counts on');
      assert.deepEqual(runcIdsOn(a), [v.status!.runtimeId]);
      assert.deepEqual(runcIdsOn(b), []);
      await until('the migration files to go', () => (c.hosts.every((x) => migrationFilesOn(x).length === 0) ? true : undefined), 30_000);
      await c.ok(['rm', '-f', 'web']);
    });
  });

  describe('manager killed right after the switch', () => {
    // The manager (only it has this failpoint) dies once the switch is in the store and the target runs.
    onSharedCluster(n, { manager: 'migrate:after-switch' });

    it('the restarted manager finishes the migration; the container runs once, on the target', async () => {
      const { c, a, b } = n;
      const count = await runCounter(c, 'web', a.node);
      assert.equal(await count(), 1);
      const created = await c.client.migrations.create({ container: 'web', to: b.node, strategy: 'stop-copy' });
      const id = created.metadata.name;
      await until('the manager to die at the failpoint', () => (c.managerPid() === undefined ? true : undefined));
      await c.restartManager();
      const m = await migrationEnd(c, id);
      assert.equal(m.status.phase, 'Succeeded', JSON.stringify(m.status));
      assert.match(await readFile(join(c.home, 'logs', 'manager.log'), 'utf8'), /failpoint migrate:after-switch: killing this process/);
      const v = await until('the target to report it', async () => {
        const x = await c.json<ContainerView>(['inspect', 'web']);
        return x.status?.node === b.node && x.status.phase === 'running' ? x : undefined;
      });
      assert.equal(v.container.placement?.node, b.node);
      assert.equal(await count(), 2, 'the migrated process counts on');
      await until('the source copy to go', () => (runcIdsOn(a).length === 0 ? true : undefined), 30_000);
      assert.deepEqual(runcIdsOn(b), [v.status!.runtimeId]);
      await c.ok(['rm', '-f', 'web']);
    });
  });
});
