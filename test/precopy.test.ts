/**
 * Pre-copy live migration between two simulated hosts: rounds of dumps taken while the
 * container runs, each sending only the pages that changed since the previous one (this kernel has
 * no soft-dirty tracking, so pages are compared by content), then a final delta inside the freeze,
 * restored from the chain of rounds. The final delta holds the pages the write tracker saw written
 * (ferry-dirty-track); when tracking fails, every page is compared instead. A cancel during a round
 * leaves the container where it was.
 */
import { describe, it } from 'node:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { skipUnlessReady } from './support/prereq.ts';
import { until } from './support/wait.ts';
import { MIGRATION_TOOLS, counterAt, ipOf, migrationFilesOn, onSharedCluster, runCounter, runcIdsOn, twoNodes, type TwoNodes } from './support/two-nodes.ts';
import type { ContainerView, Migration } from '../src/model/index.ts';

/** The Freeze history line that says how the final delta was made ('' when there is none). */
const finalLine = (m: Migration): string => m.status.history.find((h) => h.phase === 'Freeze' && h.message?.startsWith('final delta'))?.message ?? '';

/**
 * A failpoint describe's move: a 64 MiB counter `name` on host A goes to host B by pre-copy (`more`
 * flags added); it must succeed, `check` then sees the migration, the counter must have continued and
 * no migration file may stay.
 */
async function preCopyOnce(n: TwoNodes, name: string, check: (m: Migration) => void, more: string[] = []): Promise<void> {
  const { c, a, b } = n;
  const count = await runCounter(c, name, a.node, ['-e', 'BALLAST_MB=64', '-e', 'DIRTY_PCT_PER_SEC=2']);
  const before = await count();
  const m = await c.json<Migration>(['migrate', name, '--to', b.node, '--strategy', 'pre-copy', ...more]);
  assert.equal(m.status.phase, 'Succeeded', `${m.status.error ?? ''}`);
  check(m);
  assert.equal(await count(), before + 1, 'the counter continued');
  for (const x of c.hosts) assert.deepEqual(migrationFilesOn(x), [], `no migration files left on ${x.node}`);
  await c.ok(['rm', '-f', name]);
}

describe('live migration between two nodes (pre-copy)', { skip: skipUnlessReady(MIGRATION_TOOLS) }, () => {
  const n = twoNodes();

  it('copies rounds while the container runs, then only the last delta; its counter continues', async () => {
    const { c, a, b } = n;
    const count = await runCounter(c, 'pre', a.node, ['-e', 'BALLAST_MB=64', '-e', 'DIRTY_PCT_PER_SEC=2']);
    let last = await count();
    for (const to of [b.node, a.node]) {
      const m = await c.json<Migration>(['migrate', 'pre', '--to', to, '--strategy', 'pre-copy']);
      assert.equal(m.status.phase, 'Succeeded', `${m.status.error ?? ''}`);
      assert.equal(m.status.strategy, 'pre-copy');
      const phases = m.status.history.map((h) => h.phase);
      assert.deepEqual([...new Set(phases)], ['Pending', 'Precheck', 'Prepare', 'Copy', 'Freeze', 'Transfer', 'Restore', 'Switch', 'Cleanup', 'Succeeded']);
      assert.ok(m.status.round >= 1, `at least one round copied (${m.status.round})`);
      const rounds = m.status.history.filter((h) => h.phase === 'Copy' && h.message?.startsWith('round '));
      assert.equal(rounds.length, m.status.round, 'one history line per round');
      for (const r of rounds) assert.match(r.message ?? '', /, read while it ran \(write tracker\);/, 'no round paused the container');
      const v = await c.json<ContainerView>(['inspect', 'pre']);
      assert.deepEqual([v.container.placement?.node, v.status?.phase], [to, 'running']);
      const now = await count();
      assert.equal(now, last + 1, 'the counter continued');
      last = now;
      assert.deepEqual(c.hosts.flatMap(runcIdsOn), [v.status!.runtimeId]);
      // The final round read only the pages written since the last round began (the write tracker).
      const final = finalLine(m);
      // …and CRIU's dump left the others out (the clean-pages shim scripts/setup installs).
      assert.match(final, /^final delta after round \d+: \d+ of \d+ pages \(the pages written since it began, as the write tracker found them; CRIU dumped only those\)$/);
      // The target asked for the final delta before the freeze and began on it as the source finished.
      const restored = readFileSync(join(c.home, 'logs', `agent-${to}.log`), 'utf8').split('\n').find((l) => l.includes(`migration ${m.metadata.name}: pre restored`));
      assert.match(restored ?? '', /: fetch \(begun as the source finished\) \d+ ms/, restored);
      process.stdout.write(`# pre-copy to ${to}: ${m.status.round} round(s), freeze ${m.status.freezeMs} ms, total ${m.status.totalMs} ms, ${m.status.bytes} bytes; ${final}\n`);
    }
    for (const x of c.hosts) assert.deepEqual(migrationFilesOn(x), [], `no migration files left on ${x.node}`);
    await c.ok(['rm', '-f', 'pre']);
  });

  it('auto measures the writes and the link first: a 320 MiB container writing 1 %/s goes pre-copy, and says why', async () => {
    const { c, a, b } = n;
    const count = await runCounter(c, 'auto', a.node, ['-e', 'BALLAST_MB=320', '-e', 'DIRTY_PCT_PER_SEC=1']);
    try {
    const before = await count();
    // --check decides the same way without moving anything.
    const check = await c.json<Migration>(['migrate', 'auto', '--to', b.node, '--check']);
    assert.equal(check.status.phase, 'Succeeded', `${check.status.error ?? ''}`);
    assert.equal(check.status.strategy, 'pre-copy', check.status.strategyReason);
    const m = await c.json<Migration>(['migrate', 'auto', '--to', b.node]);
    assert.equal(m.status.phase, 'Succeeded', `${m.status.error ?? ''}`);
    assert.equal(m.status.strategy, 'pre-copy', m.status.strategyReason);
    assert.match(m.status.strategyReason ?? '', /^auto: \d+(\.\d+)? MiB in memory, written at [\d.]+ [KM]iB\/s, well under the link \([\d.]+ [MG]iB\/s\): pre-copy converges, freeze ~\d+ ms, and the source stays whole until the switch$/);
    const measured = m.status.history.find((h) => h.phase === 'Precheck' && h.message?.startsWith('auto measured'))?.message ?? '';
    assert.match(measured, /^auto measured: writes [\d.]+[KM]iB\/s \(\d+ pages written in \d+ ms\); link [\d.]+[MG]iB\/s \(32MiB fetched in \d+ ms\)$/);
    assert.equal(await count(), before + 1, 'the counter continued');
    for (const x of c.hosts) assert.deepEqual(migrationFilesOn(x), [], `no migration files (nor the probe) left on ${x.node}`);
    process.stdout.write(`# auto: ${m.status.strategyReason}; ${measured}; freeze ${m.status.freezeMs} ms\n`);
    } finally {
      await c.ok(['rm', '-f', 'auto']);
    }
  });

  it('a cancel during a round rolls back at once: the container runs on where it was', async () => {
    const { c, a, b } = n;
    const count = await runCounter(c, 'slow', a.node, ['-e', 'BALLAST_MB=64']);
    assert.equal(await count(), 1);
    // 64 MiB at 2 MiB/s: the first round would take half a minute.
    const started = c.cli(['-o', 'json', 'migrate', 'slow', '--to', b.node, '--strategy', 'pre-copy', '--bandwidth', '2M']);
    const id = await until('the migration to copy', async () => (await c.client.migrations.list()).find((m) => m.spec.container === 'slow' && m.status.phase === 'Copy')?.metadata.name);
    await c.ok(['migrations', 'cancel', id]);
    const r = await started;
    assert.equal(r.code, 1, 'a migration that did not succeed exits 1');
    const m = JSON.parse(r.stdout) as Migration;
    assert.equal(m.status.phase, 'RolledBack', JSON.stringify(m.status));
    assert.equal(m.status.failedIn, 'Copy');
    assert.match(m.status.error ?? '', /cancelled by the user/);
    const v = await c.json<ContainerView>(['inspect', 'slow']);
    assert.deepEqual([v.container.placement?.node, v.status?.phase], [a.node, 'running']);
    assert.equal(await count(), 2, 'the same process counts on');
    assert.deepEqual(runcIdsOn(b), []);
    await until('the migration files to go', () => (c.hosts.every((x) => migrationFilesOn(x).length === 0) ? true : undefined));
    await c.ok(['rm', '-f', 'slow']);
  });

  it('two processes of uid 999 (a PostgreSQL-like tree): each one\'s written pages are tracked; both counters continue', async () => {
    const { c, a, b } = n;
    await c.ok(['run', '--name', 'tree', '--node', a.node, '--user', '999:999', '-e', 'BALLAST_MB=32', '-e', 'DIRTY_PCT_PER_SEC=2',
      '--entrypoint', '/bin/sh', 'sample', '--', '-c', 'PORT=8081 /app/sample-app & PORT=8080 exec /app/sample-app']);
    const ip = await ipOf(c, 'tree');
    const counts = async (): Promise<number[]> => [await counterAt(c, `${ip}:8080`), await counterAt(c, `${ip}:8081`)];
    let last = await counts();
    for (const to of [b.node, a.node]) {
      const m = await c.json<Migration>(['migrate', 'tree', '--to', to, '--strategy', 'pre-copy']);
      assert.equal(m.status.phase, 'Succeeded', `${m.status.error ?? ''}`);
      const final = finalLine(m);
      assert.match(final, /as the write tracker found them; CRIU dumped only those\)$/);
      const now = await counts();
      assert.deepEqual(now, last.map((x) => x + 1), 'both counters continued');
      last = now;
      const who = await c.ok(['exec', 'tree', '--', 'sh', '-c', 'for p in /proc/[0-9]*; do if [ "$(cat $p/comm)" = sample-app ]; then stat -c %u $p; fi; done']);
      assert.deepEqual(who.trim().split('\n'), ['999', '999'], 'two sample apps, both still uid 999');
      process.stdout.write(`# two processes to ${to}: freeze ${m.status.freezeMs} ms; ${final}\n`);
    }
    await c.ok(['rm', '-f', 'tree']);
  });

  describe('a round cannot be read while the container runs (failpoint on the source)', () => {
    onSharedCluster(n, { a: 'migrate:tracked-round' });

    it('that round and the next are dumped, the final round compares every page; the counter continues', async () => {
      // A low bandwidth makes round 1 needed (round 0's 64 MiB would not fit the freeze goal).
      await preCopyOnce(n, 'dumped', (m) => {
        const rounds = m.status.history.filter((h) => h.phase === 'Copy' && h.message?.startsWith('round ')).map((h) => h.message ?? '');
        assert.ok(rounds.length >= 2, `two rounds or more: ${rounds.join(' | ')}`);
        assert.match(rounds[0]!, /, read while it ran \(write tracker\);/);
        for (const r of rounds.slice(1)) assert.match(r, /, dumped \(paused while CRIU read it\);/);
        assert.match(finalLine(m), /^final delta after round \d+: \d+ of \d+ pages \(every page compared with it\)$/);
      }, ['--bandwidth', '100M']);
    });
  });

  describe('CRIU fails the dump that leaves the unchanged pages out (failpoint on the source)', () => {
    onSharedCluster(n, { a: 'migrate:clean-pages-dump' });

    it('the container, still frozen and whole, is dumped again with every page pinned; the counter continues', async () => {
      await preCopyOnce(n, 'pinned', (m) => {
        assert.match(finalLine(m), /as the write tracker found them; CRIU pinned every page\)$/);
        const log = readFileSync(join(n.c.home, 'logs', `agent-${n.a.node}.log`), 'utf8');
        assert.match(log, /the final dump without the unchanged pages failed \([\s\S]*?Pid-reuse detection failed: no parent inventory/, 'CRIU itself refused it');
      });
    });
  });

  describe('the write tracker fails at the freeze (failpoint on the source)', () => {
    onSharedCluster(n, { a: 'migrate:tracker-scan' });

    it('the final round compares every page instead; the counter continues', async () => {
      await preCopyOnce(n, 'untracked', (m) => {
        assert.match(finalLine(m), /^final delta after round \d+: \d+ of \d+ pages \(every page compared with it\)$/);
      });
    });
  });
});
