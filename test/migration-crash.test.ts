/**
 * Agents killed in the middle of a migration (SIGKILL at failpoints). Target killed right after its
 * restore: the manager cannot confirm it, waits until the target node's lease lapses, thaws the
 * source and rolls back; the returning target removes its never-started copy. Source killed right
 * after its dump: the rollback cannot thaw it, so the returning source agent does. Either way the
 * container runs exactly once afterwards and its counter continues from where it was frozen. The
 * describes share one two-host cluster; each gives only the agent it kills its failpoint.
 */
import { describe, it } from 'node:test';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { skipUnlessReady } from './support/prereq.ts';
import { migrateRolledBack, MIGRATION_TOOLS, migrationFilesOn, onSharedCluster, runCounter, runcIdsOn, twoNodes } from './support/two-nodes.ts';
import { until } from './support/wait.ts';
import type { ContainerView, Migration } from '../src/model/index.ts';

describe('agents killed during a migration, on two simulated hosts', { skip: skipUnlessReady(MIGRATION_TOOLS) }, () => {
  const n = twoNodes();

  describe('target agent killed during a migration', () => {
    onSharedCluster(n, { b: 'migrate:after-restore' });

    it('rolls back to the source; the returning target removes its copy; the container runs once', async () => {
      const { c, a, b } = n;
      const count = await runCounter(c, 'web', a.node);
      assert.equal(await count(), 1);
      assert.equal(await count(), 2);
      await migrateRolledBack(c, 'web', b.node, 'Restore');
      assert.equal(b.agentPid(), undefined, 'the target agent died at the failpoint');
      // The source was thawed: the same process answers, counting on from where it was frozen.
      assert.equal(await count(), 3);
      const v = await c.json<ContainerView>(['inspect', 'web']);
      assert.deepEqual([v.container.placement?.node, v.status?.phase], [a.node, 'running']);
      // The target agent comes back and removes the copy it restored for a migration that rolled back.
      await b.restartAgent();
      await until('the orphaned copy on the target to be removed', () => (runcIdsOn(b).length === 0 ? true : undefined), 90_000);
      assert.deepEqual(runcIdsOn(a), [v.status!.runtimeId]);
      assert.equal(await count(), 4);
    });
  });

  describe('source agent killed during a migration', () => {
    onSharedCluster(n, { a: 'migrate:after-dump' });

    it('rolls back; the returning source agent thaws its frozen copy; the container runs once', async () => {
      const { c, a, b } = n;
      const count = await runCounter(c, 'web', a.node);
      assert.equal(await count(), 1);
      const r = await c.cli(['-o', 'json', 'migrate', 'web', '--to', b.node]);
      const m = JSON.parse(r.stdout) as Migration;
      assert.equal(m.status.phase, 'RolledBack', JSON.stringify(m.status));
      assert.equal(m.status.failedIn, 'Freeze');
      assert.equal(a.agentPid(), undefined, 'the source agent died at the failpoint');
      await a.restartAgent();
      // Thawed and connected again by the returning agent: the same process counts on.
      assert.equal(await count(), 2);
      const v = await c.json<ContainerView>(['inspect', 'web']);
      assert.deepEqual([v.container.placement?.node, v.status?.phase], [a.node, 'running']);
      assert.deepEqual(runcIdsOn(a), [v.status!.runtimeId]);
      assert.deepEqual(runcIdsOn(b), []);
    });
  });

  describe('target agent killed during the transfer', () => {
    onSharedCluster(n, { b: 'migrate:during-fetch' });

    it('rolls back to the source; the returning target removes the half-fetched image', async () => {
      const { c, a, b } = n;
      const count = await runCounter(c, 'web', a.node, ['-e', 'BALLAST_MB=16']);
      assert.equal(await count(), 1);
      await migrateRolledBack(c, 'web', b.node, 'Restore');
      assert.equal(b.agentPid(), undefined, 'the target agent died while fetching');
      assert.equal(await count(), 2, 'the source was thawed: the same process counts on');
      // Where they are (the agent's tmpfs scratch directory or its data dir) is the agent's choice.
      assert.ok(migrationFilesOn(b).length > 0, 'the crash left the half-fetched files');
      await b.restartAgent();
      await until('the ended migration\'s files to be removed', () => (migrationFilesOn(b).length === 0 ? true : undefined), 30_000);
      const v = await c.json<ContainerView>(['inspect', 'web']);
      assert.deepEqual([v.container.placement?.node, v.status?.phase], [a.node, 'running']);
      assert.deepEqual(runcIdsOn(a), [v.status!.runtimeId]);
      assert.deepEqual(runcIdsOn(b), []);
      assert.equal(await count(), 3);
    });
  });

  describe('source agent killed at its cleanup, after a host-local volume moved', () => {
    onSharedCluster(n, { a: 'migrate:source-cleanup' });

    it('the migration succeeds; the returning source agent removes its stale copy of the volume', async () => {
      const { c, a, b } = n;
      await c.ok(['run', '--name', 'vol', '--node', a.node, '-v', 'vcrash:/data', 'sample']);
      await c.ok(['exec', 'vol', '--', 'sh', '-c', 'echo kept > /data/a']);
      const m = await c.json<Migration>(['migrate', 'vol', '--to', b.node]);
      assert.equal(m.status.phase, 'Succeeded', m.status.error ?? '');
      assert.equal(a.agentPid(), undefined, 'the source agent died at its cleanup');
      assert.equal((await c.ok(['exec', 'vol', '--', 'cat', '/data/a'])).trim(), 'kept', 'the container runs on the target with its volume');
      assert.ok(existsSync(join(a.dataDir, 'volumes', 'vcrash')), 'the source\'s stale copy is still there while its agent is down');
      await a.restartAgent({ FERRY_FAILPOINTS: '' });
      await until('the source\'s stale copy to go', () => (existsSync(join(a.dataDir, 'volumes', 'vcrash')) ? undefined : true), 30_000);
      await until('the ended migration\'s files on the source to be removed', () => (migrationFilesOn(a).length === 0 ? true : undefined), 30_000);
      assert.equal((await c.ok(['exec', 'vol', '--', 'cat', '/data/a'])).trim(), 'kept');
      await c.ok(['rm', '-f', 'vol']);
    });
  });

  describe('source agent killed during a pre-copy round', () => {
    onSharedCluster(n, { a: 'migrate:during-copy' });

    it('rolls back; the container never stopped running on the source and counts on once its agent returns', async () => {
      const { c, a, b } = n;
      const count = await runCounter(c, 'web', a.node, ['-e', 'BALLAST_MB=16']);
      assert.equal(await count(), 1);
      await migrateRolledBack(c, 'web', b.node, 'Copy', ['--strategy', 'pre-copy']);
      assert.equal(a.agentPid(), undefined, 'the source agent died in the round');
      await a.restartAgent();
      assert.equal(await count(), 2, 'the same process, connected again by the returning agent');
      const v = await c.json<ContainerView>(['inspect', 'web']);
      assert.deepEqual([v.container.placement?.node, v.status?.phase], [a.node, 'running']);
      assert.deepEqual(runcIdsOn(a), [v.status!.runtimeId]);
      assert.deepEqual(runcIdsOn(b), []);
      await until('the rounds on the source to be removed', () => (migrationFilesOn(a).length === 0 ? true : undefined), 30_000);
    });
  });
});
