/**
 * Live migration (stop-copy) between two simulated hosts (network namespaces with an agent each,
 * joined over the overlay): the sample app's in-memory counter continues through chained migrations,
 * requests during the freeze are only delayed or refused (never answered by a reset or a stale copy),
 * prechecks refuse what cannot move, and nothing is left on either node.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { totalmem } from 'node:os';
import { until } from './support/wait.ts';
import type { SimHostInfo, TestCluster } from './support/cluster.ts';
import { skipUnlessReady } from './support/prereq.ts';
import { assertOwnCgroups, counterAt, ipOf, MIGRATION_TOOLS, migrationFilesOn, runcIdsOn, startPoller, twoNodes } from './support/two-nodes.ts';
import type { ContainerView, Migration } from '../src/model/index.ts';
import { defaultScratchDir } from '../src/agent/migrate.ts';

describe('live migration between two nodes (stop-copy)', { skip: skipUnlessReady(MIGRATION_TOOLS) }, () => {
  const n = twoNodes();
  let c: TestCluster;
  let a: SimHostInfo;
  let b: SimHostInfo;
  before(() => {
    ({ c, a, b } = n);
  });

  const runcIds = (): string[] => c.hosts.flatMap(runcIdsOn);

  it('moves a running container there and back three times; its counter never resets or goes back', async () => {
    await c.ok(['run', '--name', 'web', '--node', a.node, '--memory', '256m', 'sample']);
    // Its overlay address goes with it; the counter is read from inside host A.
    const ip = await ipOf(c, 'web');
    const count = (): Promise<number> => counterAt(c, ip);
    assert.equal(await count(), 1);
    const poller = startPoller(c, 0, ip);
    let polled: Awaited<ReturnType<typeof poller.stop>> | undefined;
    const route = [b.node, a.node, b.node, a.node, b.node, a.node];
    try {
    for (const to of route) {
      const m = await c.json<Migration>(['migrate', 'web', '--to', to]);
      assert.equal(m.status.phase, 'Succeeded', `${m.status.error ?? ''}`);
      assert.ok(m.status.freezeMs! > 0 && m.status.bytes > 0);
      assert.ok((m.status.progress?.bytes ?? 0) > 0, 'the progress the CLI draws was recorded');
      assert.deepEqual(m.status.history.map((h) => h.phase), ['Pending', 'Precheck', 'Prepare', 'Freeze', 'Transfer', 'Restore', 'Switch', 'Cleanup', 'Succeeded']);
      const v = await c.json<ContainerView>(['inspect', 'web']);
      assert.equal(v.container.placement?.node, to);
      await new Promise((r) => setTimeout(r, 200));
    }
    } finally {
      polled = await poller.stop();
    }
    const seen = polled.counts;
    assert.equal(polled.code, 0, 'the poller ended cleanly');
    assert.ok(seen.length > 20, `the poller got ${seen.length} answers`);
    // Every answer came from the one process, in order, each request counted once: consecutive numbers.
    for (let i = 1; i < seen.length; i++) assert.equal(seen[i], seen[i - 1]! + 1, `answers ${seen[i - 1]} then ${seen[i]}; the poller's failed tries: ${JSON.stringify(polled.errors)}`);
    assert.equal(seen[0], 2);
    const last = await count();
    assert.equal(last, seen[seen.length - 1]! + 1, 'the counter continues after the last migration');
    // Requests that arrived while the address was moving failed (refused or unanswered), not answered wrongly.
    process.stdout.write(`# poller: ${seen.length} answers, ${polled.errors.length} failed during the freezes\n`);
    const v = await c.json<ContainerView>(['inspect', 'web']);
    assert.equal(v.status?.node, a.node);
    assert.deepEqual(runcIds(), [v.status!.runtimeId], 'exactly one runc container on the two nodes');
    assertOwnCgroups(a, v.status!.runtimeId, 256);
    for (const x of c.hosts) assert.deepEqual(migrationFilesOn(x), [], `no migration files left on ${x.node}`);
    // The target's page server wrote each image to the agent's tmpfs scratch directory (it had room).
    assert.ok(defaultScratchDir(b.dataDir), '/dev/shm is a tmpfs here');
    const placed = readFileSync(join(c.home, 'logs', `agent-${b.node}.log`), 'utf8').match(/its files go to \S+/g) ?? [];
    assert.ok(placed.length >= 3 && placed.every((p) => p.includes(`${defaultScratchDir(b.dataDir)}/`)), `where ${b.node}'s migration files went: ${placed.join('; ')}`);
    const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').filter((l) => l.includes(c.home));
    assert.equal(mounts.length, 1, 'one rootfs mount');
    assert.equal((await c.ok(['exec', 'web', '--', 'sh', '-c', 'echo ok'])).trim(), 'ok', 'exec reaches it on its new node');
  });

  it('--check runs the prechecks only', async () => {
    const m = await c.json<Migration>(['migrate', 'web', '--to', b.node, '--check']);
    assert.equal(m.status.phase, 'Succeeded');
    assert.ok(m.status.checks.length >= 10 && m.status.checks.every((k) => k.ok), JSON.stringify(m.status.checks));
    assert.equal((await c.json<ContainerView>(['inspect', 'web'])).container.placement?.node, a.node, 'nothing moved');
  });

  it('refuses bad requests with clear errors, and changes nothing', async () => {
    const cases: [string[], number, RegExp][] = [
      [['migrate', 'web', '--to', a.node], 2, /already runs on/],
      [['migrate', 'web', '--to', 'ghost'], 4, /no node named "ghost"/],
      [['migrate', 'ghost', '--to', b.node], 4, /no container named "ghost"/],
      [['migrate', 'web', '--to', b.node, '--bandwidth', 'fast'], 2, /invalid bandwidth "fast"/],
      [['migrate', 'web', '--to', b.node, '--strategy', 'teleport'], 2, /--strategy must be/],
    ];
    for (const [args, code, re] of cases) {
      const r = await c.cli(args);
      assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re);
    }
    await c.ok(['run', '--name', 'idle', '--node', a.node, 'sample']);
    await c.ok(['stop', 'idle']);
    const stopped = await c.cli(['migrate', 'idle', '--to', b.node]);
    assert.equal(stopped.code, 5);
    assert.match(stopped.stderr, /is not running \(it is stopped\)/);
    await c.ok(['rm', 'idle']);
    assert.equal((await c.json<ContainerView>(['inspect', 'web'])).container.placement?.node, a.node);
  });

  it('refuses a target without room, and a second migration of a container already migrating', async () => {
    // Limits count as allocated: a 60 % hog on b leaves no room for another 60 % container.
    const gib = Math.floor((0.6 * totalmem()) / 1024 ** 3);
    await c.ok(['run', '--name', 'hog', '--node', b.node, '--memory', `${gib}g`, 'sample']);
    await c.ok(['run', '--name', 'big', '--node', a.node, '--memory', `${gib}g`, 'sample']);
    const full = await c.cli(['-o', 'json', 'migrate', 'big', '--to', b.node]);
    assert.equal(full.code, 1);
    const m = JSON.parse(full.stdout) as Migration;
    assert.equal(m.status.phase, 'Failed');
    assert.match(m.status.error ?? '', new RegExp(`prechecks failed: .*${b.node} has \\d+ MiB and [\\d.]+ CPUs free; big needs ${gib * 1024} MiB`));
    assert.equal((await c.json<ContainerView>(['inspect', 'big'])).status?.node, a.node, 'nothing moved');
    await c.ok(['rm', '-f', 'hog', 'big']);

    // A slow pre-copy (64 KiB/s: its first round takes many seconds) keeps the first migration going
    // while the second is asked for.
    const first = await c.client.migrations.create({ container: 'web', to: b.node, strategy: 'pre-copy', bandwidthBytesPerSec: 64 * 1024 });
    const again = await c.cli(['migrate', 'web', '--to', b.node]);
    assert.equal(again.code, 5, again.stderr);
    assert.match(again.stderr, new RegExp(`already being migrated \\(${first.metadata.name}\\); wait for it or \`ferry migrations cancel ${first.metadata.name}\``));
    await c.ok(['migrations', 'cancel', first.metadata.name]);
    const ended = await until('the first migration to roll back', async () => {
      const x = await c.client.migrations.get(first.metadata.name);
      return x.status.phase === 'RolledBack' ? x : undefined;
    });
    assert.match(ended.status.error ?? '', /cancelled by the user/);
    assert.equal((await c.json<ContainerView>(['inspect', 'web'])).container.placement?.node, a.node);
  });

  it('a container holding what CRIU cannot dump fails its prechecks and keeps running where it is', async () => {
    await c.ok(['run', '--name', 'watcher', '--node', a.node, '-e', 'INOTIFY_WATCH=/tmp', 'sample']);
    const t0 = Date.now();
    while ((await c.client.containers.get('watcher')).status?.migratable?.ok !== false && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 200));
    const r = await c.cli(['-o', 'json', 'migrate', 'watcher', '--to', b.node]);
    assert.equal(r.code, 1);
    const m = JSON.parse(r.stdout) as Migration;
    assert.equal(m.status.phase, 'Failed');
    assert.match(m.status.error!, /prechecks failed: CRIU cannot checkpoint it: process \d+ \(sample-app\) holds an inotify watch/);
    const v = await c.json<ContainerView>(['inspect', 'watcher']);
    assert.deepEqual([v.status?.phase, v.status?.node], ['running', a.node]);
    await c.ok(['rm', '-f', 'watcher']);
  });

  it('a host-local volume moves with its container; a writable host directory or a volume another container uses is refused', async () => {
    await c.ok(['run', '--name', 'vol', '--node', a.node, '-v', 'vdata:/data', 'sample']);
    await c.ok(['exec', 'vol', '--', 'sh', '-c', 'echo kept > /data/a && mkdir /data/d && echo x > /data/d/x && head -c 300000 /dev/urandom > /data/big && chown 65534 /data/a']);
    const sum = (await c.ok(['exec', 'vol', '--', 'md5sum', '/data/big'])).split(' ')[0];
    const m = await c.json<Migration>(['migrate', 'vol', '--to', b.node]);
    assert.equal(m.status.phase, 'Succeeded', m.status.error ?? '');
    assert.ok(m.status.history.some((h) => /local volumes vdata: [\d.]+[KMG]?i?B copied/.test(h.message ?? '')), 'the base was copied while it ran');
    assert.ok(m.status.checks.some((k) => k.check === 'volumes' && /local volumes \(vdata\) move with it/.test(k.reason)));
    assert.equal((await c.ok(['exec', 'vol', '--', 'cat', '/data/a'])).trim(), 'kept');
    assert.equal((await c.ok(['exec', 'vol', '--', 'stat', '-c', '%u', '/data/a'])).trim(), '65534', 'ownership kept (as the container sees it)');
    assert.equal((await c.ok(['exec', 'vol', '--', 'md5sum', '/data/big'])).split(' ')[0], sum);
    assert.ok(existsSync(join(b.dataDir, 'volumes', 'vdata', 'data', 'd', 'x')), 'the volume lives on the target now');
    await until('the source\'s stale copy to go', () => (existsSync(join(a.dataDir, 'volumes', 'vdata')) ? undefined : true));
    // Written on the target, then moved back: the data goes both ways.
    await c.ok(['exec', 'vol', '--', 'sh', '-c', 'echo back > /data/b && rm -r /data/d']);
    assert.equal((await c.json<Migration>(['migrate', 'vol', '--to', a.node])).status.phase, 'Succeeded');
    assert.equal((await c.ok(['exec', 'vol', '--', 'sh', '-c', 'cat /data/a /data/b; ls /data'])).trim(), 'kept\nback\na\nb\nbig');
    await c.ok(['rm', '-f', 'vol']);

    const hostDir = join(c.home, 'host-dir');
    await c.ok(['run', '--name', 'binder', '--node', a.node, '-v', `${hostDir}:/data`, 'sample']);
    const bind = await c.cli(['-o', 'json', 'migrate', 'binder', '--to', b.node]);
    assert.equal(bind.code, 1);
    assert.match((JSON.parse(bind.stdout) as Migration).status.error ?? '', new RegExp(`binder writes to host directories that would not move with it: ${hostDir} \\(at /data\\); use a named volume`));
    await c.ok(['run', '--name', 'sharer1', '--node', a.node, '-v', 'both:/data', 'sample']);
    await c.ok(['run', '--name', 'sharer2', '--node', a.node, '-v', 'both:/data', 'sample']);
    const shared = await c.cli(['-o', 'json', 'migrate', 'sharer1', '--to', b.node]);
    assert.equal(shared.code, 1);
    assert.match((JSON.parse(shared.stdout) as Migration).status.error ?? '', /cannot move while other containers on its node use them: both \(also used by sharer2\)/);
    for (const n of ['binder', 'sharer1']) assert.equal((await c.json<ContainerView>(['inspect', n])).status?.node, a.node, `${n} did not move`);
    await c.ok(['rm', '-f', 'binder', 'sharer1', 'sharer2']);
  });

  it('a container with 160 MiB of memory runs on the target before its memory is all back: the target copies it in from its own copy', async () => {
    await c.ok(['run', '--name', 'big', '--node', a.node, '--memory', '512m', '-e', 'BALLAST_MB=160', 'sample']);
    const ip = await ipOf(c, 'big');
    const ballast = async (): Promise<{ pages: number; fnv1a: string }> => {
      const r = await c.exec(0, ['timeout', '10', '/usr/bin/busybox', 'wget', '-q', '-O', '-', `http://${ip}/ballast`]);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as { pages: number; fnv1a: string };
    };
    let last = await counterAt(c, ip); // waits until it listens: the app writes its ballast first
    const before = await ballast();
    assert.equal(before.pages, 160 * 256);
    for (const [to, host, strategy] of [[b.node, b, 'stop-copy'], [a.node, a, 'pre-copy']] as const) {
      {
        const m = await c.json<Migration>(['migrate', 'big', '--to', to, '--strategy', strategy]);
        assert.equal(m.status.phase, 'Succeeded', `${m.status.error ?? ''}`);
        // The target's log names how it restored: lazily, from the pages it already holds.
        const log = readFileSync(join(c.home, 'logs', `agent-${to}.log`), 'utf8');
        assert.match(log, new RegExp(`migration ${m.metadata.name}: big restored \\(memory copied in lazily from this node\\)`));
        assert.deepEqual(await ballast(), before, `${strategy} to ${to}: every byte of the 160 MiB is back`);
        const now = await counterAt(c, ip);
        assert.equal(now, last + 1, 'the counter continued');
        last = now;
        const v = await c.json<ContainerView>(['inspect', 'big']);
        assert.deepEqual([v.container.placement?.node, v.status?.phase], [to, 'running']);
        assertOwnCgroups(host, v.status!.runtimeId, 512);
        // Cleanup waited for the copy: the image is gone, and with it the daemon that read it.
        for (const x of c.hosts) assert.deepEqual(migrationFilesOn(x), [], `no migration files left on ${x.node}`);
        process.stdout.write(`# ${strategy} to ${to} with 160 MiB: freeze ${m.status.freezeMs} ms, total ${m.status.totalMs} ms\n`);
      }
    }
    await c.ok(['rm', '-f', 'big']);
  });

  it('migrations ls and inspect show what happened', async () => {
    const list = await c.json<Migration[]>(['migrations', 'ls']);
    assert.ok(list.filter((m) => m.status.phase === 'Succeeded' && !m.spec.checkOnly).length >= 6);
    const text = await c.ok(['migrations', 'inspect', list[list.length - 1]!.metadata.name]);
    assert.match(text, /phases\s+Pending .* → Succeeded/);
    const gone = await c.cli(['migrations', 'inspect', 'mig-nope']);
    assert.equal(gone.code, 4);
  });
});
