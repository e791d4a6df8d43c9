/**
 * ferry-shim on its own, with `sh` standing in for runc: the stand-in backgrounds a "container"
 * process (which the shim adopts as subreaper) and writes its pid, as `runc create` would.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { containerPaths, isAlive, isOurShim, launchShim, liveShimPid, readPidFile, ShimLauncher } from './shim.ts';
import type { ContainerPaths } from './shim.ts';
import { readExit } from './record.ts';
import { parseLogLine } from './logs.ts';
import { buildShim, missingPrerequisite, prerequisiteGate } from './testkit.ts';

const missing = missingPrerequisite({ runc: false });

test('ferry-shim', { ...prerequisiteGate(missing), timeout: 60_000 }, async (t) => {
  assert.equal(missing, undefined, `prerequisite missing: ${missing}`);
  const base = mkdtempSync('/tmp/ferry-shim-test-');
  const shim = buildShim(base);
  const started: number[] = [];
  t.after(() => {
    // Only real pids: process.kill(0) would signal this whole process group.
    for (const pid of started.filter((x) => x > 0)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(base, { recursive: true, force: true });
  });

  let n = 0;
  const fresh = (): ContainerPaths => {
    const p = containerPaths(base, `c${n++}`);
    mkdirSync(p.dir);
    return p;
  };
  /**
   * A runc stand-in that starts `script` as the container and records its pid. Like runc, it must not
   * be the container's reaper: dash reaps a background job that exits before dash itself does (a
   * container that read EOF at once was lost that way in 14–24 % of 300 tries, and the shim waited
   * for an exit it could never see). `setsid -f` forks the container off a parent that leaves at
   * once, so it is reparented to the shim (a subreaper) like a real container init; the container
   * writes its own pid file, and the stand-in exits only once it is there.
   */
  const fakeRunc = (p: ContainerPaths, script: string, after = ''): string[] =>
    // sh gives background jobs /dev/null as stdin unless redirected explicitly: hand over the pipe.
    ['/bin/sh', '-c', `exec 3<&0; setsid -f /bin/sh -c 'echo $$ > ${p.containerPid}.tmp; mv ${p.containerPid}.tmp ${p.containerPid}; ${script}' 0<&3 3<&-; `
      + `while [ ! -s ${p.containerPid} ]; do :; done; ${after}`];
  const until = async (what: string, check: () => boolean | Promise<boolean>): Promise<void> => {
    for (let i = 0; i < 200 && !(await check()); i++) await new Promise((r) => setTimeout(r, 25));
    assert.ok(await check(), `timed out waiting for ${what}`);
  };
  const entries = (p: ContainerPaths) => readFileSync(p.log, 'utf8').split('\n').filter(Boolean).map((l) => parseLogLine(l));

  await t.test('supervises: logs as JSON lines, records the exit, leaves', async () => {
    const p = fresh();
    const script = 'echo out; printf "q\\"b\\\\s\\ttab\\n" >&2; head -c 40000 /dev/zero | tr "\\\\0" x; echo; exit 3';
    const r = await launchShim(shim, p, fakeRunc(p, script, 'echo runc-says >&2'));
    assert.equal(r.status, 0);
    assert.match(r.stderr, /runc-says/, 'runc\'s stderr reaches the caller');
    await until('exit.json', () => existsSync(p.exit));
    const exit = await readExit(p);
    assert.equal(exit?.exitCode, 3);
    assert.equal(exit?.signal, undefined);
    const logs = entries(p);
    assert.ok(logs.every((e) => e !== undefined), 'every line is valid JSON');
    assert.deepEqual(logs.filter((e) => e!.stream === 'stderr').map((e) => e!.line).sort(), ['q"b\\s\ttab', 'runc-says']);
    const long = logs.filter((e) => e!.line.startsWith('xxx')).map((e) => e!.line.length);
    assert.deepEqual(long, [16384, 16384, 40000 - 2 * 16384], 'long lines are cut at 16 KiB');
    await until('the shim to leave', () => !existsSync(p.shimPid));
  });

  await t.test('stdio of the container: three pipes, stdin at EOF; exit by signal', async () => {
    const p = fresh();
    const r = await launchShim(shim, p, fakeRunc(p, 'exec sleep 1000'));
    assert.equal(r.status, 0);
    const shimPid = await readPidFile(p.shimPid);
    started.push(shimPid);
    assert.ok(await isOurShim(shimPid, p));
    assert.equal(await isOurShim(process.pid, p), false);
    assert.equal(await liveShimPid(p), shimPid);
    const cpid = await readPidFile(p.containerPid);
    started.push(cpid);
    // The pid is written as soon as sh forks the job; its redirections and exec come after.
    await until('the container to exec sleep', () => readFileSync(`/proc/${cpid}/cmdline`, 'utf8').startsWith('sleep\0'));
    const fds = readdirSync(`/proc/${cpid}/fd`).sort();
    assert.deepEqual(fds, ['0', '1', '2'], 'no shim fd leaks into the container');
    for (const fd of fds) assert.match(readlinkSync(`/proc/${cpid}/fd/${fd}`), /^pipe:/);
    const shimFds = readdirSync(`/proc/${shimPid}/fd`).map((fd) => readlinkSync(`/proc/${shimPid}/fd/${fd}`));
    assert.equal(shimFds.filter((l) => l.startsWith('/') && l !== '/dev/null' && l !== p.log).length, 0, `shim holds ${shimFds.join(' ')}`);
    process.kill(cpid, 'SIGKILL');
    await until('exit.json', () => existsSync(p.exit));
    assert.deepEqual(await readExit(p).then((e) => [e?.exitCode, e?.signal]), [137, 'SIGKILL']);

    const q = fresh();
    await launchShim(shim, q, fakeRunc(q, 'exec cat'));
    // Ended by the cleanup if cat's exit is never seen (0 when the shim has already left: nothing to end).
    const qShim = await readPidFile(q.shimPid);
    if (qShim > 0) started.push(qShim);
    await until('cat to see EOF', () => existsSync(q.exit));
    assert.equal((await readExit(q))?.exitCode, 0);
  });

  await t.test('a failing runc: its status and stderr reach the caller, no exit file', async () => {
    const p = fresh();
    const r = await launchShim(shim, p, ['/bin/sh', '-c', 'echo boom >&2; exit 7']);
    assert.deepEqual([r.status, r.stderr.trim()], [7, 'boom']);
    const q = fresh();
    const noPid = await launchShim(shim, q, ['/bin/true']);
    assert.equal(noPid.status, 125);
    assert.match(noPid.stderr, /no pid/);
    const missingBinary = await launchShim(shim, fresh(), ['/no/such/runc']);
    assert.equal(missingBinary.status, 127);
    await until('shims to leave', () => !existsSync(p.shimPid) && !existsSync(q.shimPid));
    assert.equal(existsSync(p.exit), false);
  });

  await t.test('SIGTERM ends supervision without inventing an exit', async () => {
    const p = fresh();
    await launchShim(shim, p, fakeRunc(p, 'exec sleep 1000'));
    const shimPid = await readPidFile(p.shimPid);
    const cpid = await readPidFile(p.containerPid);
    started.push(shimPid, cpid);
    process.kill(shimPid, 'SIGTERM');
    await until('the shim to go', async () => !existsSync(p.shimPid) && !(await isAlive(shimPid)));
    assert.equal(existsSync(p.exit), false);
    process.kill(cpid, 'SIGKILL');
  });

  await t.test('the launcher keeps one shim started ahead, gives it its arguments, and ends it on close', async () => {
    const launcher = new ShimLauncher(shim);
    const p = fresh();
    const first = await launcher.launch(p, fakeRunc(p, 'exec sleep 1000'));
    assert.equal(first.status, 0, first.stderr);
    await until('a spare to wait for the next start', () => launcher.sparePid() !== undefined);
    const spare = launcher.sparePid()!;
    assert.ok(await isAlive(spare));
    const q = fresh();
    const second = await launcher.launch(q, fakeRunc(q, 'exec sleep 1000'));
    assert.equal(second.status, 0, second.stderr);
    // Both supervisors carry their arguments on their command lines (the agent recognises them by these).
    for (const c of [p, q]) {
      const pid = await readPidFile(c.shimPid);
      started.push(pid, await readPidFile(c.containerPid));
      assert.ok(await isOurShim(pid, c), `shim ${pid} of ${c.dir} is recognised`);
    }
    const failing = await launcher.launch(fresh(), ['/bin/sh', '-c', 'echo nope >&2; exit 4']);
    assert.deepEqual([failing.status, failing.stderr.trim()], [4, 'nope']);
    await until('a new spare', () => launcher.sparePid() !== undefined);
    const last = launcher.sparePid()!;
    assert.notEqual(last, spare);
    launcher.close();
    await until('the spare to end once closed', async () => !(await isAlive(last)));
    for (const c of [p, q]) process.kill(await readPidFile(c.containerPid), 'SIGKILL');
  });
});
