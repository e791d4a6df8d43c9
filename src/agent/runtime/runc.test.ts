/**
 * The runc runtime against real runc, as root: a busybox rootfs owned by the mapped root, a user
 * namespace 0→100000 and a new network namespace (only `lo`), a private runc root and cgroup parent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { isFerryError } from '../../errors/index.ts';
import { createRuncRuntime } from './runc.ts';
import type { RuncRuntime } from './runc.ts';
import type { BundleSpec, LogEntry } from './types.ts';
import {
  buildShim, cgroupParentDirs, CRIU, HOST_ROOT, makeRootfs, missingPrerequisite, prerequisiteGate, processesWith, removeCgroupTree, REPO,
} from './testkit.ts';

const missing = missingPrerequisite({ runc: true });
const WAIT = 20_000; // upper bound for waits, so a bug fails instead of hanging

test('runc runtime (real runc, user namespace, new netns)', { ...prerequisiteGate(missing), timeout: 240_000 }, async (t) => {
  assert.equal(missing, undefined, `prerequisite missing: ${missing}`);
  const run = randomBytes(3).toString('hex');
  const prefix = `ft${run}-`;
  const cgroupParent = `ferry-test-${run}`;
  const base = mkdtempSync('/tmp/ferry-rt-');
  chmodSync(base, 0o755); // runc's user-namespaced init must traverse down to the rootfs
  const runcRoot = join(base, 'runc');
  const options = { stateDir: join(base, 'state'), runcRoot, shimPath: buildShim(base), cgroupParent, pollMs: 100, ...(existsSync(CRIU) ? { criuPath: CRIU } : {}) };
  const rootfs = makeRootfs(base, ['sh', 'sleep', 'echo', 'cat', 'id', 'top', 'ls', 'head', 'tr', 'true']);
  const rt: RuncRuntime = createRuncRuntime(options);

  t.after(() => {
    // Best effort even when a subtest failed half-way: runc state, shims, cgroups, files.
    const ids = spawnSync('runc', ['--root', runcRoot, 'list', '-q'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
    for (const id of ids) spawnSync('runc', ['--root', runcRoot, 'delete', '--force', id]);
    for (const pid of processesWith(base)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const dir of cgroupParentDirs(cgroupParent)) {
      try {
        removeCgroupTree(dir);
      } catch {
        // still busy; reported by the final subtest
      }
    }
    rmSync(base, { recursive: true, force: true });
  });

  const spec = (name: string, args: string[], extra: Partial<BundleSpec> = {}): BundleSpec => ({
    id: prefix + name,
    rootfs,
    args,
    env: ['PATH=/bin', 'HOME=/'],
    cwd: '/',
    uid: 0,
    gid: 0,
    hostname: name,
    resources: { memoryBytes: 64 * 1024 * 1024, cpus: 1, pidsLimit: 100 },
    mounts: [],
    uidMappings: [{ containerId: 0, hostId: HOST_ROOT, size: 65536 }],
    gidMappings: [{ containerId: 0, hostId: HOST_ROOT, size: 65536 }],
    newNetns: true,
    ...extra,
  });
  const logsOf = async (id: string): Promise<LogEntry[]> => {
    const out: LogEntry[] = [];
    for await (const e of rt.logs(id, {})) out.push(e);
    return out;
  };
  const eventually = async (what: string, check: () => Promise<boolean> | boolean): Promise<void> => {
    for (let i = 0; i < 200; i++) {
      if (await check()) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.fail(`timed out waiting for ${what}`);
  };
  const cg = (controller: string, id: string, file: string): string =>
    readFileSync(join('/sys/fs/cgroup', controller, cgroupParent, id, file), 'utf8').trim();
  const exec = async (id: string, args: string[], stdin?: Uint8Array): Promise<{ code: number; out: string; err: string }> => {
    let out = '';
    let err = '';
    const code = await rt.exec(id, {
      args,
      ...(stdin ? { stdin } : {}),
      onStdout: (b) => { out += Buffer.from(b).toString(); },
      onStderr: (b) => { err += Buffer.from(b).toString(); },
    });
    return { code, out, err };
  };

  await t.test('create, start, stdio pipes, logs, stats, update, exec, CRIU dump, kill, delete', async () => {
    const s = spec('main', ['sh', '-c', 'echo out-line; echo err-line >&2; exec sleep 1000']);
    const created = await rt.create(s);
    assert.equal(created.status, 'created');
    assert.ok(created.shimPid > 0 && created.pid > 0);
    const started = await rt.start(s.id);
    assert.equal(started.status, 'running');
    const pid = started.pid;

    const fds = Object.fromEntries(readdirSync(`/proc/${pid}/fd`).map((fd) => [fd, readlinkSync(`/proc/${pid}/fd/${fd}`)]));
    for (const fd of ['0', '1', '2']) assert.match(fds[fd] ?? '', /^pipe:\[\d+\]$/, `fd ${fd} is ${fds[fd]}`);
    assert.deepEqual(Object.keys(fds).sort(), ['0', '1', '2'], 'nothing but stdio is open in the container');
    assert.equal(readFileSync(`/proc/${pid}/uid_map`, 'utf8').trim().split(/\s+/).join(' '), `0 ${HOST_ROOT} 65536`);

    await eventually('both log lines', async () => (await logsOf(s.id)).length >= 2);
    const lines = (await logsOf(s.id)).map((e) => `${e.stream}:${e.line}`);
    assert.deepEqual(lines.sort(), ['stderr:err-line', 'stdout:out-line']);

    const stats = await rt.stats(s.id);
    assert.ok(stats.cpuUsageNs > 0, 'cpu used');
    assert.ok(stats.memoryUsageBytes > 0, 'memory used');
    assert.equal(stats.memoryLimitBytes, 64 * 1024 * 1024);
    assert.ok(stats.pids >= 1);

    await rt.update(s.id, { memoryBytes: 128 * 1024 * 1024, cpus: 0.5, pidsLimit: 50 });
    assert.equal(cg('memory', s.id, 'memory.limit_in_bytes'), String(128 * 1024 * 1024));
    assert.equal(cg('memory', s.id, 'memory.memsw.limit_in_bytes'), String(128 * 1024 * 1024));
    assert.equal(cg('cpu', s.id, 'cpu.cfs_quota_us'), '50000');
    assert.equal(cg('pids', s.id, 'pids.max'), '50');
    const bundle = JSON.parse(readFileSync(join(options.stateDir, s.id, 'config.json'), 'utf8')) as { linux: { resources: { memory: { limit: number } } } };
    assert.equal(bundle.linux.resources.memory.limit, 128 * 1024 * 1024, 'bundle follows the update');
    await rt.update(s.id, {});
    assert.equal(cg('cpu', s.id, 'cpu.cfs_quota_us'), '-1');
    assert.equal(cg('pids', s.id, 'pids.max'), 'max');
    assert.equal((await rt.stats(s.id)).memoryLimitBytes, 0, 'unlimited reads as 0');
    // Pause and resume (on cgroup v1 through the freezer cgroup itself; runc sees the same state).
    await rt.pause(s.id);
    assert.equal((await rt.state(s.id))?.status, 'paused');
    assert.match(cg('freezer', s.id, 'freezer.state'), /^FROZEN$/);
    assert.match(readFileSync(`/proc/${pid}/status`, 'utf8'), /^State:\s+[DS]/m, 'the frozen process does not run');
    await rt.resume(s.id);
    assert.equal(cg('freezer', s.id, 'freezer.state'), 'THAWED');
    const after = await rt.state(s.id);
    assert.equal(after?.status, 'running');
    assert.equal(after?.pid, pid, 'same process after the updates');

    assert.deepEqual(await exec(s.id, ['sh', '-c', 'echo hi; echo err >&2; exit 5']), { code: 5, out: 'hi\n', err: 'err\n' });
    assert.deepEqual(await exec(s.id, ['cat'], new TextEncoder().encode('fed\n')), { code: 0, out: 'fed\n', err: '' });
    assert.equal((await exec(s.id, ['id', '-u'])).out, '0\n', 'root inside the user namespace');
    await assert.rejects(exec(s.id, ['/does-not-exist']), (e) => isFerryError(e, 'RUNTIME_EXEC_FAILED'));

    if (existsSync(CRIU)) {
      // No host file in the container's fd table, or CRIU could not dump it.
      const images = join(base, 'images-main');
      mkdirSync(images);
      const r = spawnSync('runc', ['--root', runcRoot, '--criu', CRIU, 'checkpoint', '--image-path', images, '--leave-running', s.id], { encoding: 'utf8' });
      const dumpLog = existsSync(join(images, 'dump.log')) ? readFileSync(join(images, 'dump.log'), 'utf8').split('\n').slice(-15).join('\n') : '';
      assert.equal(r.status, 0, `checkpoint failed: ${r.stderr}\n${dumpLog}`);
      assert.deepEqual(JSON.parse(readFileSync(join(images, 'descriptors.json'), 'utf8')).map((d: string) => d.startsWith('pipe:')), [true, true, true]);
      assert.equal((await rt.state(s.id))?.status, 'running', 'still running after --leave-running');
    } else if (process.env.CI === 'true') {
      assert.fail(`CRIU missing at ${CRIU}`);
    } else {
      t.diagnostic(`CRIU smoke skipped: no ${CRIU}`);
    }

    await rt.kill(s.id, 'KILL');
    const exit = await rt.waitExit(s.id, AbortSignal.timeout(WAIT));
    assert.equal(exit.exitCode, 137);
    assert.equal(exit.signal, 'SIGKILL');
    assert.equal(exit.oomKilled, false);
    assert.equal((await rt.state(s.id))?.status, 'stopped');
    await assert.rejects(rt.kill(s.id, 'TERM'), (e) => isFerryError(e, 'RUNTIME_NOT_RUNNING'));

    await rt.delete(s.id);
    assert.equal(await rt.state(s.id), undefined);
    assert.notEqual(spawnSync('runc', ['--root', runcRoot, 'state', s.id]).status, 0, 'runc state is gone');
    assert.equal(existsSync(join(options.stateDir, s.id)), false, 'state dir is gone');
    for (const dir of cgroupParentDirs(cgroupParent)) assert.equal(existsSync(join(dir, s.id)), false, `${dir}/${s.id} removed`);
    await rt.delete(s.id); // idempotent
  });

  await t.test('an exit code is recorded; logs follow until exit and tail', async () => {
    const s = spec('exit3', ['sh', '-c', 'for i in 1 2 3; do echo line$i; sleep 0.2; done; echo bye >&2; exit 3']);
    await rt.create(s);
    const followed: string[] = [];
    const follow = (async () => {
      for await (const e of rt.logs(s.id, { follow: true, signal: AbortSignal.timeout(WAIT) })) followed.push(e.line);
    })();
    await rt.start(s.id);
    const exit = await rt.waitExit(s.id, AbortSignal.timeout(WAIT));
    assert.equal(exit.exitCode, 3);
    assert.equal(exit.signal, undefined);
    await follow;
    assert.deepEqual(followed, ['line1', 'line2', 'line3', 'bye'], 'follow ends at the exit with every line');
    const tail: LogEntry[] = [];
    for await (const e of rt.logs(s.id, { tail: 2 })) tail.push(e);
    assert.deepEqual(tail.map((e) => e.line), ['line3', 'bye']);
    const st = await rt.state(s.id);
    assert.equal(st?.status, 'stopped');
    assert.equal(st?.exit?.exitCode, 3);
    await rt.delete(s.id);
  });

  await t.test('stop: graceful SIGTERM, and SIGKILL when SIGTERM is ignored', async () => {
    const graceful = spec('graceful', ['sh', '-c', 'trap "exit 0" TERM; while true; do sleep 0.1; done']);
    const stubborn = spec('stubborn', ['sh', '-c', 'trap "" TERM; while true; do sleep 0.1; done']);
    for (const s of [graceful, stubborn]) {
      await rt.create(s);
      await rt.start(s.id);
    }
    const g = await rt.stop(graceful.id, WAIT);
    assert.deepEqual([g?.exitCode, g?.signal], [0, undefined]);
    const k = await rt.stop(stubborn.id, 500);
    assert.deepEqual([k?.exitCode, k?.signal], [137, 'SIGKILL']);
    assert.deepEqual(await rt.stop(stubborn.id, 500), k, 'stopping again returns the same exit');
    for (const s of [graceful, stubborn]) await rt.delete(s.id);
  });

  await t.test('re-adoption: a fresh runtime instance lists, waits for and stops a running container', async () => {
    const s = spec('adopt', ['sleep', '1000']);
    await rt.create(s);
    await rt.start(s.id);
    const fresh = createRuncRuntime(options); // what a restarted agent builds
    const found = (await fresh.list()).find((c) => c.id === s.id);
    assert.equal(found?.status, 'running');
    assert.ok((found?.shimPid ?? 0) > 0);
    const waiting = fresh.waitExit(s.id, AbortSignal.timeout(WAIT));
    const stopped = await fresh.stop(s.id, 300); // sleep as pid 1 ignores SIGTERM
    assert.equal(stopped?.exitCode, 137);
    assert.deepEqual(await waiting, stopped);
    await fresh.delete(s.id);
    fresh.close();
  });

  await t.test('a killed shim: the container keeps running, its exit status is reported unknown (-1)', async () => {
    const s = spec('noshim', ['sleep', '1000']);
    await rt.create(s);
    const st = await rt.start(s.id);
    process.kill(st.shimPid, 'SIGKILL');
    await eventually('the shim to be gone', async () => (await rt.state(s.id))?.shimPid === 0);
    assert.equal((await rt.state(s.id))?.status, 'running');
    const exit = await rt.stop(s.id, 300);
    assert.equal(exit?.exitCode, -1);
    await rt.delete(s.id);
  });

  await t.test('the shim outlives the process that created the container', async () => {
    const s = spec('orphan', ['sh', '-c', 'echo from-orphan; exec sleep 1000']);
    const script = join(base, 'creator.mts');
    writeFileSync(script, [
      `import { createRuncRuntime } from ${JSON.stringify(join(REPO, 'src/agent/runtime/index.ts'))};`,
      `const rt = createRuncRuntime(${JSON.stringify(options)});`,
      `const spec = ${JSON.stringify(s)};`,
      'await rt.create(spec);',
      'const st = await rt.start(spec.id);',
      'process.stdout.write(JSON.stringify({ st, self: process.pid }));',
    ].join('\n'));
    const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0);
    const { st, self } = JSON.parse(out) as { st: { shimPid: number; pid: number }; self: number };
    const shimStat = readFileSync(`/proc/${st.shimPid}/stat`, 'utf8');
    const ppid = Number(shimStat.slice(shimStat.lastIndexOf(')') + 2).split(' ')[1]);
    assert.notEqual(ppid, self, 'the shim is not the creator\'s child');
    const now = await rt.state(s.id);
    assert.equal(now?.status, 'running');
    assert.equal(now?.shimPid, st.shimPid, 'the same shim still supervises');
    await eventually('the orphan\'s output', async () => (await logsOf(s.id)).some((e) => e.line === 'from-orphan'));
    const exit = await rt.stop(s.id, 300);
    assert.equal(exit?.exitCode, 137, 'the exit is recorded by the surviving shim');
    await rt.delete(s.id);
  });

  await t.test('restore from a CRIU image runs under a new shim with fresh pipes', { ...prerequisiteGate(missingPrerequisite({ criu: true })) }, async () => {
    // A file in /dev/shm (a tmpfs: CRIU saves and restores its content through native/criu/tar.c).
    const s = spec('ckpt', ['sh', '-c', 'echo kept > /dev/shm/ferry-tar-check; chmod 4710 /dev/shm/ferry-tar-check; i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.1; done']);
    await rt.create(s);
    await rt.start(s.id);
    await eventually('a few ticks', async () => (await logsOf(s.id)).length >= 3);
    const images = join(base, 'images-ckpt');
    mkdirSync(images);
    const r = spawnSync('runc', ['--root', runcRoot, '--criu', CRIU, 'checkpoint', '--image-path', images, s.id], { encoding: 'utf8' });
    assert.equal(r.status, 0, `checkpoint failed: ${r.stderr}`);
    // Every tmpfs was archived in CRIU's own child (the preloaded shim), none handed to tar.
    const dumpLog = readFileSync(join(images, 'dump.log'), 'utf8');
    const tmpfsImages = readdirSync(images).filter((n) => n.startsWith('tmpfs-dev-')).length;
    assert.ok(tmpfsImages >= 2, `runc's /dev and /dev/shm are tmpfs: ${readdirSync(images).join(' ')}`);
    assert.equal(dumpLog.match(/ferry-criu-tar: archived \d+ entries/g)?.length, tmpfsImages, dumpLog);
    assert.doesNotMatch(dumpLog, /handing over to tar/);
    const before = (await logsOf(s.id)).map((e) => Number(e.line.slice(4)));
    await rt.waitExit(s.id, AbortSignal.timeout(WAIT));
    await rt.delete(s.id);
    spawnSync('chown', ['-R', `${HOST_ROOT}:${HOST_ROOT}`, images]); // the mapped root reads the images

    const restored = await rt.restore(spec('restored', s.args), { imagePath: images, workPath: join(base, 'work-ckpt') });
    assert.equal(restored.status, 'running');
    assert.ok(restored.shimPid > 0);
    const fds = ['0', '1', '2'].map((fd) => readlinkSync(`/proc/${restored.pid}/fd/${fd}`));
    for (const fd of fds) assert.match(fd, /^pipe:/);
    await eventually('ticks after the restore', async () => (await logsOf(restored.id)).length >= 2);
    const after = (await logsOf(restored.id)).map((e) => Number(e.line.slice(4)));
    assert.ok(after[0]! > Math.max(...before) - 1, `counting goes on: before ${before.join(',')} after ${after.join(',')}`);
    const restoreLog = readFileSync(join(base, 'work-ckpt', 'restore.log'), 'utf8');
    assert.equal(restoreLog.match(/ferry-criu-tar: extracted \d+ entries/g)?.length, tmpfsImages, restoreLog);
    assert.doesNotMatch(restoreLog, /handing over to tar/);
    assert.deepEqual(await exec(restored.id, ['cat', '/dev/shm/ferry-tar-check']), { code: 0, out: 'kept\n', err: '' });
    for (const [path, mode] of [['', 0o1777], ['/ferry-tar-check', 0o4710]] as const) {
      const st = statSync(`/proc/${restored.pid}/root/dev/shm${path}`);
      assert.deepEqual([st.mode & 0o7777, st.uid], [mode, HOST_ROOT], `/dev/shm${path}: mode and owner (the mapped root) kept`);
    }
    assert.equal((await rt.stop(restored.id, 300))?.exitCode, 137);
    await rt.delete(restored.id);
  });

  await t.test('a failing create throws runc\'s message and leaves nothing', async () => {
    const s = spec('broken', ['/no/such/binary']);
    await assert.rejects(rt.create(s), (e) => isFerryError(e, 'RUNTIME_CREATE_FAILED') && /no such file or directory/.test(e.message));
    assert.equal(await rt.state(s.id), undefined);
    assert.equal(existsSync(join(options.stateDir, s.id)), false);
    assert.notEqual(spawnSync('runc', ['--root', runcRoot, 'state', s.id]).status, 0);
    for (const dir of cgroupParentDirs(cgroupParent)) assert.equal(existsSync(join(dir, s.id)), false);
    await assert.rejects(rt.create({ ...s, id: '../escape' }), (e) => isFerryError(e, 'RUNTIME_INVALID_ID'));
  });

  await t.test('the OOM killer is reported', async () => {
    const s = spec('oom', ['sh', '-c', 'x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done'], { resources: { memoryBytes: 16 * 1024 * 1024 } });
    await rt.create(s);
    await rt.start(s.id);
    const exit = await rt.waitExit(s.id, AbortSignal.timeout(WAIT));
    assert.equal(exit.oomKilled, true, JSON.stringify(exit));
    assert.equal(exit.exitCode, 137);
    await rt.delete(s.id);
  });

  await t.test('nothing is left behind', async () => {
    assert.deepEqual(await rt.list(), []);
    const left = spawnSync('runc', ['--root', runcRoot, 'list', '-q'], { encoding: 'utf8' }).stdout.trim();
    assert.equal(left, '', 'runc list is empty');
    assert.ok(rt.close !== undefined);
    rt.close(); // its spare shim, waiting for the next start, ends with it
    await eventually('shims to exit', () => processesWith(options.shimPath).length === 0);
    for (const dir of cgroupParentDirs(cgroupParent)) {
      assert.deepEqual(readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name), [], `${dir} has no container cgroups`);
      removeCgroupTree(dir);
    }
    assert.deepEqual(cgroupParentDirs(cgroupParent), []);
  });
});
