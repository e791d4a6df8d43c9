/**
 * Lifecycle behaviour on a real node: restart policies and exit codes, re-adoption after the agent is
 * killed (the container keeps running, its state survives, its published port comes back), volumes.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFerry, teardownFerry, type TestFerry } from './support/ferry.ts';
import { ensurePrerequisites, skipUnlessReady } from './support/prereq.ts';
import { until } from './support/wait.ts';
import { freePort, getWithRetry } from './support/net.ts';
import type { ContainerView } from '../src/model/index.ts';

const TOOLS = ['runc', 'ip', 'iptables'];

describe('container lifecycle on a real node', { skip: skipUnlessReady(TOOLS) }, () => {
  let f: TestFerry;
  before(async () => {
    ensurePrerequisites(TOOLS);
    f = await startFerry();
  });
  after(async () => {
    if (!f) return;
    const left = await teardownFerry(f);
    assert.deepEqual(left, [], `teardown found leftovers: ${left.join('; ')}`);
  });

  it('restart policy no: the exit code is recorded and the container stays down', async () => {
    const r = await f.cli(['run', '--name', 'once', '--entrypoint', '/bin/sh', 'sample', '--', '-c', 'echo bye; exit 3']);
    const v = await until('once to exit', async () => {
      const cv = await f.client.containers.get('once');
      return cv.status?.phase === 'failed' ? cv : undefined;
    });
    assert.equal(v.status?.exitCode, 3);
    assert.equal(v.status?.restartCount, 0);
    assert.match(r.stdout, /once/);
    assert.match(await f.ok(['ps', '-a']), /^once\s+sample\s+failed \(3\)/m);
    assert.match(await f.ok(['logs', 'once']), /bye/);
    await f.ok(['rm', 'once']);
  });

  it('on-failure:2 restarts a failing container twice, then gives up', async () => {
    await f.cli(['run', '--name', 'flaky', '--restart', 'on-failure:2', '--entrypoint', '/bin/sh', 'sample', '--', '-c', 'echo run; exit 4']);
    const v = await until('flaky to give up', async () => {
      const cv = await f.client.containers.get('flaky');
      return cv.status?.phase === 'failed' ? cv : undefined;
    });
    assert.equal(v.status?.restartCount, 2);
    assert.equal(v.status?.exitCode, 4);
    assert.match(v.status?.message ?? '', /gave up after 2 restarts/);
    // The agent re-scans every container each second (--rescan-ms=1000): the verdict must survive it.
    await new Promise((r) => setTimeout(r, 2500));
    const later = await f.client.containers.get('flaky');
    assert.equal(later.status?.phase, 'failed', `after re-scans: ${later.status?.phase} (${later.status?.message})`);
    assert.match(later.status?.message ?? '', /gave up after 2 restarts/);
    const runs = (await f.ok(['logs', 'flaky'])).split('\n').filter((l) => l === 'run');
    assert.equal(runs.length, 3, 'the first run and two restarts, logs kept across restarts');
    await f.ok(['rm', 'flaky']);
  });

  it('always: a container that exits 0 comes back', async () => {
    await f.ok(['run', '--name', 'loop', '--restart', 'always', '--entrypoint', '/bin/sh', 'sample', '--', '-c', 'sleep 0.3; exit 0']);
    const v = await until('loop to have restarted twice', async () => {
      const cv = await f.client.containers.get('loop');
      return (cv.status?.restartCount ?? 0) >= 2 ? cv : undefined;
    });
    assert.ok(v.status!.restartCount >= 2);
    await f.ok(['rm', '-f', 'loop']);
    assert.deepEqual(f.runcIds(), []);
  });

  it('the agent is killed and restarted: the container keeps running and is re-adopted', async () => {
    const port = await freePort();
    await f.ok(['run', '--name', 'web', '-p', `127.0.0.1:${port}:80`, 'sample']);
    await getWithRetry(`http://127.0.0.1:${port}/`);
    const before = await f.client.containers.get('web');
    process.kill(f.agentPid()!, 'SIGKILL');
    await until('the agent to die', async () => (f.agentPid() === undefined ? true : undefined));
    // The container does not depend on the agent; its supervisor holds it.
    const pidAlive = await readFile(`/proc/${before.status!.pid}/status`, 'utf8').then(() => true, () => false);
    assert.ok(pidAlive, 'container process survives the agent');
    await f.restartAgent();
    const body = JSON.parse(await getWithRetry(`http://127.0.0.1:${port}/`)) as { count: number };
    assert.equal(body.count, 2, 'the same process answers, its counter was not reset');
    const after = await until('web to be reported running again', async () => {
      const cv: ContainerView = await f.client.containers.get('web');
      return cv.status?.phase === 'running' ? cv : undefined;
    });
    assert.equal(after.status!.pid, before.status!.pid);
    assert.deepEqual(f.runcIds(), [before.status!.runtimeId]);
    // It is still managed: stop works through the re-adopted supervisor.
    const stopped = await f.json<ContainerView[]>(['stop', 'web']);
    assert.equal(stopped[0]!.status?.phase, 'stopped');
    await f.ok(['rm', 'web']);
  });

  it('inspect says when a container cannot be checkpointed, and why', async () => {
    await f.ok(['run', '--name', 'watcher', '-e', 'INOTIFY_WATCH=/tmp', 'sample']);
    const v = await until('the inotify watch to be reported', async () => {
      const cv = await f.client.containers.get('watcher');
      return cv.status?.migratable?.ok === false ? cv : undefined;
    }, 30_000);
    assert.match(v.status!.migratable!.reasons.join(' '), /\(sample-app\) holds an inotify watch/);
    assert.match(await f.ok(['inspect', 'watcher']), /^Migratable:\s+no: process \d+ \(sample-app\) holds an inotify watch/m);
    await f.ok(['rm', '-f', 'watcher']);
  });

  it('a volume bind-mounts a host directory, read-write and read-only', async () => {
    const dir = await mkdtemp(join(tmpdir(), `ferry-vol-${f.id}-`));
    await chmod(dir, 0o777);
    try {
      await f.ok(['run', '--name', 'vol', '-v', `${dir}:/data`, '-v', `${dir}:/ro:ro`, 'sample']);
      await f.ok(['exec', 'vol', '--', 'sh', '-c', 'echo from-container > /data/file']);
      assert.equal((await readFile(join(dir, 'file'), 'utf8')).trim(), 'from-container');
      const ro = await f.cli(['exec', 'vol', '--', 'sh', '-c', 'echo x > /ro/other']);
      assert.notEqual(ro.code, 0);
      assert.match(ro.stderr, /Read-only file system/);
      await f.ok(['rm', '-f', 'vol']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
