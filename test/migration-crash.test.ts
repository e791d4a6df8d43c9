/**
 * Agents killed in the middle of a migration (SIGKILL at failpoints). Target killed right after its
 * restore: the manager cannot confirm it, waits until the target node's lease lapses, thaws the
 * source and rolls back; the returning target removes its never-started copy. Source killed right
 * after its dump: the rollback cannot thaw it, so the returning source agent does. Either way the
 * container runs exactly once afterwards and its counter continues from where it was frozen.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { skipUnlessReady } from './support/prereq.ts';
import { counterAt, migrateRolledBack, MIGRATION_TOOLS, runCounter, runcIdsOn, twoNodes } from './support/two-nodes.ts';
import { until } from './support/wait.ts';
import { freePort } from './support/net.ts';
import type { ContainerView, Migration } from '../src/model/index.ts';

describe('target agent killed during a migration', { skip: skipUnlessReady(MIGRATION_TOOLS) }, () => {
  const n = twoNodes({ targetEnv: { FERRY_FAILPOINTS: 'migrate:after-restore' } });

  it('rolls back to the source; the returning target removes its copy; the container runs once', async () => {
    const { f, a, b } = n;
    const count = await runCounter(f, 'web', a.node);
    assert.equal(await count(), 1);
    assert.equal(await count(), 2);
    await migrateRolledBack(f, 'web', b.node, 'Restore');
    assert.equal(f.pidOf(b.node), undefined, 'the target agent died at the failpoint');
    // The source was thawed: the same process answers, counting on from where it was frozen.
    assert.equal(await count(), 3);
    const v = await f.json<ContainerView>(['inspect', 'web']);
    assert.deepEqual([v.container.placement?.node, v.status?.phase], [a.node, 'running']);
    // The target agent comes back and removes the copy it restored for a migration that rolled back.
    await f.restartAgentOf(b.node);
    await until('the orphaned copy on the target to be removed', () => (runcIdsOn(b).length === 0 ? true : undefined), 90_000);
    assert.deepEqual(runcIdsOn(a), [v.status!.runtimeId]);
    assert.equal(await count(), 4);
  });
});

describe('source agent killed during a migration', { skip: skipUnlessReady(MIGRATION_TOOLS) }, () => {
  // Every daemon gets the failpoint; only the source reaches it (the target never dumps).
  const n = twoNodes({ env: { FERRY_FAILPOINTS: 'migrate:after-dump' }, targetEnv: { FERRY_FAILPOINTS: '' } });

  it('rolls back; the returning source agent thaws its frozen copy; the container runs once', async () => {
    const { f, a, b } = n;
    const port = await freePort();
    await f.ok(['run', '--name', 'web', '--node', a.node, '-p', `127.0.0.1:${port}:80`, 'sample']);
    const count = (): Promise<number> => counterAt(port, 150);
    assert.equal(await count(), 1);
    const r = await f.cli(['-o', 'json', 'migrate', 'web', '--to', b.node]);
    const m = JSON.parse(r.stdout) as Migration;
    assert.equal(m.status.phase, 'RolledBack', JSON.stringify(m.status));
    assert.equal(m.status.failedIn, 'Freeze');
    assert.equal(f.pidOf(a.node), undefined, 'the source agent died at the failpoint');
    await f.restartAgentOf(a.node);
    // Thawed and its port published again by the returning agent: the same process counts on.
    assert.equal(await count(), 2);
    const v = await f.json<ContainerView>(['inspect', 'web']);
    assert.deepEqual([v.container.placement?.node, v.status?.phase], [a.node, 'running']);
    assert.deepEqual(runcIdsOn(a), [v.status!.runtimeId]);
    assert.deepEqual(runcIdsOn(b), []);
  });
});

describe('target agent killed during the transfer', { skip: skipUnlessReady(MIGRATION_TOOLS) }, () => {
  const n = twoNodes({ targetEnv: { FERRY_FAILPOINTS: 'migrate:during-fetch' } });

  it('rolls back to the source; the returning target removes the half-fetched image', async () => {
    const { f, a, b } = n;
    const count = await runCounter(f, 'web', a.node, ['-e', 'BALLAST_MB=16']);
    assert.equal(await count(), 1);
    await migrateRolledBack(f, 'web', b.node, 'Restore');
    assert.equal(f.pidOf(b.node), undefined, 'the target agent died while fetching');
    assert.equal(await count(), 2, 'the source was thawed: the same process counts on');
    const leftOnTarget = join(f.home, 'agents', b.node, 'migrations');
    assert.ok(readdirSync(leftOnTarget).length > 0, 'the crash left the half-fetched files');
    await f.restartAgentOf(b.node);
    await until('the ended migration\'s files to be removed', () => (readdirSync(leftOnTarget).length === 0 ? true : undefined), 30_000);
    const v = await f.json<ContainerView>(['inspect', 'web']);
    assert.deepEqual([v.container.placement?.node, v.status?.phase], [a.node, 'running']);
    assert.deepEqual(runcIdsOn(a), [v.status!.runtimeId]);
    assert.deepEqual(runcIdsOn(b), []);
    assert.equal(await count(), 3);
  });
});

describe('source agent killed during a pre-copy round', { skip: skipUnlessReady(MIGRATION_TOOLS) }, () => {
  // Every daemon gets the failpoint; only the source reaches it (the target never dumps a round).
  const n = twoNodes({ env: { FERRY_FAILPOINTS: 'migrate:during-copy' }, targetEnv: { FERRY_FAILPOINTS: '' } });

  it('rolls back; the container never stopped running on the source and counts on once its agent returns', async () => {
    const { f, a, b } = n;
    const count = await runCounter(f, 'web', a.node, ['-e', 'BALLAST_MB=16']);
    assert.equal(await count(), 1);
    await migrateRolledBack(f, 'web', b.node, 'Copy', ['--strategy', 'pre-copy']);
    assert.equal(f.pidOf(a.node), undefined, 'the source agent died in the round');
    await f.restartAgentOf(a.node);
    assert.equal(await count(), 2, 'the same process, its port published again by the returning agent');
    const v = await f.json<ContainerView>(['inspect', 'web']);
    assert.deepEqual([v.container.placement?.node, v.status?.phase], [a.node, 'running']);
    assert.deepEqual(runcIdsOn(a), [v.status!.runtimeId]);
    assert.deepEqual(runcIdsOn(b), []);
    await until('the rounds on the source to be removed', () => (readdirSync(join(f.home, 'agents', a.node, 'migrations')).length === 0 ? true : undefined), 30_000);
  });
});
