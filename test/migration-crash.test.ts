/**
 * A migration whose target agent dies right after restoring (SIGKILL at a failpoint): the manager
 * cannot confirm the restore, waits until the target node's lease lapses, thaws the source, and rolls
 * back; when the target agent returns it removes its orphaned copy. The container runs exactly once
 * afterwards and its counter continues from where it was frozen.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, existsSync } from 'node:fs';
import { startFerry, teardownFerry, type TestFerry, type AgentInfo } from './support/ferry.ts';
import { ensurePrerequisites, skipUnlessReady } from './support/prereq.ts';
import { freePort, getWithRetry } from './support/net.ts';
import type { ContainerView, Migration } from '../src/model/index.ts';

const TOOLS = ['runc', 'ip', 'iptables', '/opt/ferry/bin/criu'];

async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 90_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

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
    await until('the orphaned copy on the target to be removed', () => (idsOn(b).length === 0 ? true : undefined));
    assert.deepEqual(idsOn(a), [v.status!.runtimeId]);
    assert.equal(await count(), 4);
  });
});
