/**
 * An agent killed in the middle of a create (SIGKILL at a failpoint) leaves debris; the restarted
 * agent must finish the create (container still wanted) or undo it (container removed meanwhile), and
 * leave no orphan runc container, cgroup, mount or address either way.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { startFerry, teardownFerry, type TestFerry } from './support/ferry.ts';
import { ensurePrerequisites, skipUnlessReady } from './support/prereq.ts';
import { until } from './support/wait.ts';
import type { ContainerView } from '../src/model/index.ts';

const TOOLS = ['runc', 'ip', 'iptables'];

function cgroupChildren(f: TestFerry): string[] {
  const dir = `/sys/fs/cgroup/memory/${f.cgroupParent}`;
  return existsSync(dir) ? readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name) : [];
}

function mountsUnder(f: TestFerry): string[] {
  return readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '').filter((m) => m.startsWith(f.home));
}

for (const [failpoint, after_] of [['create:after-runc-create', 'a runc container in state created'], ['create:after-rootfs', 'a mounted rootfs']] as const) {
  describe(`agent killed at ${failpoint}`, { skip: skipUnlessReady(TOOLS) }, () => {
    let f: TestFerry;
    before(async () => {
      ensurePrerequisites(TOOLS);
      f = await startFerry({ env: { FERRY_FAILPOINTS: failpoint } });
    });
    after(async () => {
      if (!f) return;
      const left = await teardownFerry(f);
      assert.deepEqual(left, [], `teardown found leftovers: ${left.join('; ')}`);
    });

    it(`leaves ${after_}; the restarted agent finishes the create with exactly one container`, async () => {
      const pid = f.agentPid();
      assert.ok(pid, 'agent runs');
      await f.ok(['run', '-d', '--name', 'c1', 'sample']);
      await until('the agent to die at the failpoint', () => (f.agentPid() === undefined ? true : undefined));
      assert.equal(readdirSync(join(f.home, 'agents', f.node, 'containers')).length, 1, 'the crash left the container record');
      if (failpoint === 'create:after-runc-create') {
        assert.equal(f.runcIds().length, 1, 'the crash left a runc container');
        assert.equal(mountsUnder(f).length, 1, 'and its mounted rootfs');
      }

      await f.restartAgent();
      const v = await until('c1 to run', async () => {
        const cv = await f.client.containers.get('c1');
        return cv.status?.phase === 'running' ? cv : undefined;
      });
      assert.deepEqual(f.runcIds(), [v.status!.runtimeId], 'exactly one runc container, the one reported');
      assert.deepEqual(cgroupChildren(f), [v.status!.runtimeId], 'exactly one container cgroup');
      assert.equal(mountsUnder(f).length, 1, 'exactly one rootfs mount');
    });

    it('a container removed while its agent was dead is cleaned up when the agent returns', async () => {
      // Arm the failpoint again for this create only, by restarting the agent with it.
      const pid = f.agentPid()!;
      process.kill(pid, 'SIGTERM');
      await until('the agent to stop', () => (f.agentPid() === undefined ? true : undefined));
      await f.restartAgent({ FERRY_FAILPOINTS: failpoint });
      await f.ok(['run', '-d', '--name', 'c2', 'sample']);
      await until('the agent to die at the failpoint', () => (f.agentPid() === undefined ? true : undefined));
      // The node's lease runs out (10 s) so the manager removes the container without the agent.
      await f.ok(['rm', '-f', 'c2']);
      const gone = await f.cli(['inspect', 'c2']);
      assert.equal(gone.code, 4);
      await f.restartAgent();
      const c1 = await f.client.containers.get('c1') as ContainerView;
      await until('the orphan to be removed', () => (f.runcIds().length === 1 && mountsUnder(f).length === 1 ? true : undefined));
      assert.deepEqual(f.runcIds(), [c1.status!.runtimeId]);
      assert.deepEqual(cgroupChildren(f), [c1.status!.runtimeId]);
    });
  });
}
