/**
 * Agents killed in the middle of a migration (SIGKILL at failpoints). Target killed right after its
 * restore: the manager cannot confirm it, waits until the target node's lease lapses, thaws the
 * source and rolls back; the returning target removes its never-started copy. Source killed right
 * after its dump: the rollback cannot thaw it, so the returning source agent does. Either way the
 * container runs exactly once afterwards and its counter continues from where it was frozen.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, existsSync } from 'node:fs';
import { startFerry, teardownFerry, type TestFerry, type AgentInfo } from './support/ferry.ts';
import { ensurePrerequisites, skipUnlessReady } from './support/prereq.ts';
import { until } from './support/wait.ts';
import { freePort, getWithRetry } from './support/net.ts';
import type { ContainerView, Migration } from '../src/model/index.ts';

const TOOLS = ['runc', 'ip', 'iptables', '/opt/ferry/bin/criu'];

describe('target agent killed during a migration', { skip: skipUnlessReady(TOOLS) }, () => {
  let f: TestFerry;
  let a: AgentInfo;
  let b: AgentInfo;
  before(async () => {
    ensurePrerequisites(TOOLS);
    f = await startFerry();
    a = f.agents[0]!;
    b = await f.addAgent({ FERRY_FAILPOINTS: 'migrate:after-restore' });
  });
  after(async () => {
    if (!f) return;
    const left = await teardownFerry(f);
    assert.deepEqual(left, [], `teardown found leftovers: ${left.join('; ')}`);
  });

  it('rolls back to the source; the returning target removes its copy; the container runs once', async () => {
    const port = await freePort();
    await f.ok(['run', '--name', 'web', '--node', a.node, '-p', `127.0.0.1:${port}:80`, 'sample']);
    const count = async (): Promise<number> => (JSON.parse(await getWithRetry(`http://127.0.0.1:${port}/`, 100)) as { count: number }).count;
    assert.equal(await count(), 1);
    assert.equal(await count(), 2);
    const r = await f.cli(['-o', 'json', 'migrate', 'web', '--to', b.node]);
    const m = JSON.parse(r.stdout) as Migration;
    assert.equal(r.code, 1);
    assert.equal(m.status.phase, 'RolledBack', JSON.stringify(m.status));
    assert.equal(m.status.failedIn, 'Restore');
    assert.equal(f.pidOf(b.node), undefined, 'the target agent died at the failpoint');
    // The source was thawed: the same process answers, counting on from where it was frozen.
    assert.equal(await count(), 3);
    const v = await f.json<ContainerView>(['inspect', 'web']);
    assert.deepEqual([v.container.placement?.node, v.status?.phase], [a.node, 'running']);
    // The target agent comes back and removes the copy it restored for a migration that rolled back.
    await f.restartAgentOf(b.node);
    const idsOn = (x: AgentInfo): string[] => (existsSync(x.runcRoot) ? readdirSync(x.runcRoot).filter((n) => !n.startsWith('.')) : []);
    await until('the orphaned copy on the target to be removed', () => (idsOn(b).length === 0 ? true : undefined), 90_000);
    assert.deepEqual(idsOn(a), [v.status!.runtimeId]);
    assert.equal(await count(), 4);
  });
});

describe('source agent killed during a migration', { skip: skipUnlessReady(TOOLS) }, () => {
  let f: TestFerry;
  let a: AgentInfo;
  let b: AgentInfo;
  before(async () => {
    ensurePrerequisites(TOOLS);
    f = await startFerry({ env: { FERRY_FAILPOINTS: 'migrate:after-dump' } });
    a = f.agents[0]!;
    b = await f.addAgent();
  });
  after(async () => {
    if (!f) return;
    const left = await teardownFerry(f);
    assert.deepEqual(left, [], `teardown found leftovers: ${left.join('; ')}`);
  });

  it('rolls back; the returning source agent thaws its frozen copy; the container runs once', async () => {
    const port = await freePort();
    await f.ok(['run', '--name', 'web', '--node', a.node, '-p', `127.0.0.1:${port}:80`, 'sample']);
    const count = async (): Promise<number> => (JSON.parse(await getWithRetry(`http://127.0.0.1:${port}/`, 150)) as { count: number }).count;
    assert.equal(await count(), 1);
    const r = await f.cli(['-o', 'json', 'migrate', 'web', '--to', b.node]);
    const m = JSON.parse(r.stdout) as Migration;
    assert.equal(m.status.phase, 'RolledBack', JSON.stringify(m.status));
    assert.equal(m.status.failedIn, 'Freeze');
    assert.equal(f.pidOf(a.node), undefined, 'the source agent died at the failpoint');
    await f.restartAgentOf(a.node);
    // Thawed and its port published again by the returning agent: the same process counts on.
    assert.equal(await count(), 2);
    const idsOn = (x: AgentInfo): string[] => (existsSync(x.runcRoot) ? readdirSync(x.runcRoot).filter((n) => !n.startsWith('.')) : []);
    const v = await f.json<ContainerView>(['inspect', 'web']);
    assert.deepEqual([v.container.placement?.node, v.status?.phase], [a.node, 'running']);
    assert.deepEqual(idsOn(a), [v.status!.runtimeId]);
    assert.deepEqual(idsOn(b), []);
  });
});
