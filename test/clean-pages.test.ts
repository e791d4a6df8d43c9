/**
 * The clean-pages shim (native/criu/clean-pages.c) with real CRIU: a dump over a parent image leaves
 * out exactly the pages the list vouches for (PE_PARENT entries), dumps the others — pages named
 * written and each thread's stack pointer page — and the switch is off without FERRY_CRIU_CLEAN:
 * plain CRIU runs still know the kernel has no dirty-page tracking (their kernel-facts cache is apart).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanPageRanges } from '../src/agent/dirty-track.ts';
import { PE_PARENT, PE_PRESENT, readPagemap, writeParentInventory } from '../src/agent/criu-image.ts';
import { CRIU_CLEAN_CACHE_FILE, cleanPagesSupported, primeCriuCache } from '../src/agent/criu-cache.ts';
import { freePort } from '../src/agent/migrate.ts';
import { skipUnlessReady } from './support/prereq.ts';
import { until } from './support/wait.ts';

const CRIU = '/opt/ferry/bin/criu';
const SAMPLE = fileURLToPath(new URL('../build/sample-app', import.meta.url));
const PAGE = 4096;

/** Page numbers covered by a pagemap's entries with `flag`. */
function pagesWith(entries: readonly { vaddr: bigint; nrPages: number; flags: number }[], flag: number): Set<number> {
  const out = new Set<number>();
  for (const e of entries) {
    if (!(e.flags & flag)) continue;
    const first = Number(e.vaddr / BigInt(PAGE));
    for (let i = 0; i < e.nrPages; i++) out.add(first + i);
  }
  return out;
}

function criu(args: string[], env: NodeJS.ProcessEnv = process.env): { status: number | null; out: string } {
  const r = spawnSync(CRIU, args, { encoding: 'utf8', env });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe('CRIU with the clean-pages shim', { skip: skipUnlessReady([CRIU, SAMPLE]) }, () => {
  let dir: string;
  let app: ChildProcess | undefined;

  before(async () => {
    // As the agent does at its start: CRIU's kernel facts for runs with the switch on, so none probes.
    await primeCriuCache(CRIU, { cleanPages: true });
    dir = mkdtempSync('/tmp/ferry-cleanpages-');
    // Its own session (CRIU dumps a tree whose root leads its session), 32 MiB written once.
    app = spawn(SAMPLE, [], { env: { PORT: String(await freePort('127.0.0.1')), BALLAST_MB: '32', DIRTY_PCT_PER_SEC: '0' }, stdio: 'ignore', detached: true });
    await until('the ballast to be written', () => {
      const rss = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${app!.pid}/status`, 'utf8'));
      return rss && Number(rss[1]) > 32 * 1024 ? true : undefined;
    }, 10_000);
  });

  after(() => {
    if (app?.pid !== undefined && app.exitCode === null) process.kill(app.pid, 'SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the switch: CRIU reports dirty-page tracking only with FERRY_CRIU_CLEAN set', async () => {
    assert.equal(await cleanPagesSupported(CRIU), true);
    const plain = criu(['check', '--feature', 'mem_dirty_track']);
    assert.notEqual(plain.status, 0, `without the switch this kernel has no dirty tracking: ${plain.out}`);
  });

  it('a dump over the parent takes only the pages not vouched for; the rest are PE_PARENT entries', async () => {
    const pid = app!.pid!;
    const [d0, d1, d2] = [join(dir, 'd0'), join(dir, 'd1'), join(dir, 'd2')];
    for (const d of [d0, d1, d2]) mkdirSync(d);
    const full = criu(['dump', '-t', String(pid), '-D', d0, '--leave-running', '-o', 'dump.log']);
    assert.equal(full.status, 0, `${full.out}${readFileSync(join(d0, 'dump.log'), 'utf8').slice(-2000)}`);
    await writeParentInventory(d0);
    // Stopped (as a frozen container is), so its stack pointer can be read.
    process.kill(pid, 'SIGSTOP');
    await until('the process to stop', () => (/^State:\s+T/m.test(readFileSync(`/proc/${pid}/status`, 'utf8')) ? true : undefined));
    try {
      const all = cleanPageRanges(pid, []);
      assert.ok(all && all.length > 0, 'a stopped process has clean pages to vouch for');
      // Name ten pages in the middle of the biggest range written: they must be dumped.
      const big = all.reduce((a, b) => (b[1] - b[0] > a[1] - a[0] ? b : a));
      const mid = Math.floor((big[0] + big[1]) / 2);
      const written: [number, number] = [mid, mid + 10];
      const clean = cleanPageRanges(pid, [written])!;
      const lines = [`p ${pid}`, ...clean.map(([s, e]) => `c ${(s * PAGE).toString(16)} ${(e * PAGE).toString(16)}`)];
      writeFileSync(join(dir, 'clean'), `${lines.join('\n')}\n`);
      const inc = criu(['dump', '-t', String(pid), '-D', d1, '--leave-running', '--track-mem', '--prev-images-dir', '../d0', '-o', 'dump.log'], { ...process.env, FERRY_CRIU_CLEAN: join(dir, 'clean') });
      assert.equal(inc.status, 0, `${inc.out}${readFileSync(join(d1, 'dump.log'), 'utf8').slice(-2000)}`);

      const before = await readPagemap(join(d0, `pagemap-${pid}.img`));
      const pm = await readPagemap(join(d1, `pagemap-${pid}.img`));
      const [had, present, parent] = [pagesWith(before.entries, PE_PRESENT), pagesWith(pm.entries, PE_PRESENT), pagesWith(pm.entries, PE_PARENT)];
      const inClean = (p: number): boolean => clean.some(([s, e]) => p >= s && p < e);
      for (let p = written[0]; p < written[1]; p++) assert.ok(present.has(p), `written page 0x${(p * PAGE).toString(16)} dumped`);
      // CRIU leaves the vDSO to the parent as well, whatever the list says (its own rule for that
      // mapping; a round holds the whole vDSO, which never changes).
      const vdso = /^([0-9a-f]+)-([0-9a-f]+) .*\[vdso\]$/m.exec(readFileSync(`/proc/${pid}/maps`, 'utf8'));
      const inVdso = (p: number): boolean => vdso !== null && p >= parseInt(vdso[1]!, 16) / PAGE && p < parseInt(vdso[2]!, 16) / PAGE;
      for (const p of parent) assert.ok((inClean(p) || inVdso(p)) && had.has(p), `PE_PARENT page 0x${(p * PAGE).toString(16)} is clean (${inClean(p)}) and in the parent (${had.has(p)})`);
      for (const p of present) assert.ok(!inClean(p), `dumped page 0x${(p * PAGE).toString(16)} was not vouched for`);
      for (const p of had) if (inClean(p)) assert.ok(parent.has(p), `clean page 0x${(p * PAGE).toString(16)} left to the parent`);
      const sp = readFileSync(`/proc/${pid}/syscall`, 'utf8').trim().split(' ');
      const spPage = Number(BigInt(sp[sp.length - 2]!) / BigInt(PAGE));
      if (had.has(spPage)) assert.ok(present.has(spPage), 'the stack pointer page is dumped');
      assert.ok(parent.size >= 32 * 256 - 100, `the ballast (8,192 pages, 10 of them named written) left to the parent: ${parent.size} pages`);
      const [bytes0, bytes1] = [statSync(join(d0, `pages-${before.head.pagesId}.img`)).size, statSync(join(d1, `pages-${pm.head.pagesId}.img`)).size];
      assert.ok(bytes1 * 20 < bytes0, `pages written: ${bytes1} bytes instead of ${bytes0}`);
      process.stdout.write(`# clean-pages dump: ${present.size} pages dumped, ${parent.size} left to the parent (full dump: ${had.size})\n`);

      // Without the switch the same request is refused: CRIU knows this kernel tracks no dirty pages.
      const off = criu(['dump', '-t', String(pid), '-D', d2, '--leave-running', '--track-mem', '--prev-images-dir', '../d0', '-o', 'dump.log']);
      assert.notEqual(off.status, 0);
      assert.match(readFileSync(join(d2, 'dump.log'), 'utf8'), /Tracking memory is not available|Dirty tracking/);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    assert.ok(existsSync(`/proc/${pid}`), 'the process ran on through every dump');
    assert.ok(!existsSync(`${CRIU_CLEAN_CACHE_FILE}.tmp`), 'no CRIU run probed the kernel (which leaves a temporary file on a /run that is not a tmpfs)');
  });
});
