import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { TOOLS } from '../cli/paths.ts';
import { canRelayStatus, spawnAhead, sparesWaiting, startSpares, stopSpares } from './spawn-ahead.ts';

const PATH = '/usr/sbin:/usr/bin:/sbin:/bin';

/** stdout, stderr and the exit of `child`. */
function outcome(child: ChildProcess): Promise<{ stdout: string; stderr: string; code: number | null }> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (b: Buffer) => { stdout += b.toString(); });
  child.stderr?.on('data', (b: Buffer) => { stderr += b.toString(); });
  return new Promise((resolve) => child.on('close', (code) => resolve({ stdout, stderr, code })));
}

/** The pids of the spares waiting now, read from their /proc entries (children of this process running ferry-exec). */
function sparePids(): number[] {
  const out: number[] = [];
  for (const pid of readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)) {
    try {
      if (readlinkSync(`/proc/${pid}/exe`) === TOOLS.exec) out.push(pid);
    } catch { /* gone */ }
  }
  return out;
}

async function waitForSpares(n: number): Promise<void> {
  // Used spares come back once no command has run for 0.3 s.
  for (let i = 0; i < 1000 && sparesWaiting() < n; i++) await sleep(5);
  assert.equal(sparesWaiting(), n, `${n} spares started`);
}

before(() => {
  assert.ok(existsSync(TOOLS.exec), `${TOOLS.exec} is missing: run scripts/setup`);
  assert.ok(startSpares(TOOLS.exec, 3));
});
after(() => stopSpares());

test('spawnAhead: a spare becomes the command in place (same pid), with its input, environment, directory, output and exit code', async () => {
  await waitForSpares(3);
  const before = sparePids();
  const child = spawnAhead('sh', ['-c', 'read x; echo "$x:$PWD:$FOO"; echo oops >&2; exit 3'], { env: { PATH, FOO: 'bar' }, cwd: '/tmp' });
  assert.ok(before.includes(child.pid!), `pid ${child.pid} is one of the spares ${before.join(',')}`);
  child.stdin!.end('hello\n');
  assert.deepEqual(await outcome(child), { stdout: 'hello:/tmp:bar\n', stderr: 'oops\n', code: 3 });
});

test('spawnAhead: detached gets its own process group; noStdio gets /dev/null; noInput gets EOF', async () => {
  await waitForSpares(2);
  const d = spawnAhead('sleep', ['30'], { env: { PATH }, detached: true, noStdio: true });
  try {
    for (let i = 0; i < 200 && readlinkSync(`/proc/${d.pid}/exe`) === TOOLS.exec; i++) await sleep(5);
    const stat = readFileSync(`/proc/${d.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    assert.equal(Number(fields[2]), d.pid, 'process group = its pid');
    assert.equal(Number(fields[3]), d.pid, 'session = its pid');
    for (const fd of [0, 1, 2]) assert.equal(readlinkSync(`/proc/${d.pid}/fd/${fd}`), '/dev/null');
  } finally {
    process.kill(-d.pid!, 'SIGKILL');
  }
  const n = spawnAhead('cat', [], { env: { PATH }, noInput: true });
  assert.deepEqual(await outcome(n), { stdout: '', stderr: '', code: 0 });
});

/** A command that reports its fd 3's open flags through it, writes to stdout and stderr, and exits 4. */
const STATUS_SCRIPT = 'f=$(sed -n "s/^flags:[[:space:]]*//p" /proc/$$/fdinfo/3); printf "flags:%s" "$f" >&3; echo to-devnull; echo err >&2; exit 4';

test('spawnAhead: statusPipe gives the command a write-only pipe as fd 3 whose bytes come out on stdout; its own stdout goes nowhere; its exit is the child\'s', async () => {
  await waitForSpares(3);
  assert.ok(canRelayStatus());
  const r = await outcome(spawnAhead('sh', ['-c', STATUS_SCRIPT], { env: { PATH }, noInput: true, detached: true, statusPipe: true }));
  assert.equal(r.code, 4);
  assert.equal(r.stderr, 'err\n');
  const m = /^flags:([0-7]+)$/.exec(r.stdout);
  assert.ok(m, `only the status bytes on stdout: ${JSON.stringify(r.stdout)}`);
  assert.equal(parseInt(m[1]!, 8) & 3, 1, 'O_WRONLY');
  // A command ended by a signal: 128 + its number, as a shell reports it.
  const killed = await outcome(spawnAhead('sh', ['-c', 'kill -TERM $$'], { env: { PATH }, noInput: true, statusPipe: true }));
  assert.equal(killed.code, 128 + 15);
});

test('spawnAhead: a command that cannot run exits 127 and says why; with no spare left it is a plain spawn', async () => {
  await waitForSpares(1);
  const missing = await outcome(spawnAhead('no-such-command-ferry', [], { env: { PATH } }));
  assert.equal(missing.code, 127);
  assert.match(missing.stderr, /ferry-exec: cannot run no-such-command-ferry: No such file or directory/);
  stopSpares();
  const pids = sparePids();
  for (let i = 0; i < 200 && sparePids().length > 0; i++) await sleep(5);
  assert.deepEqual(sparePids(), [], `the spares ${pids.join(',')} ended with their stdin`);
  const plain = spawnAhead('sh', ['-c', 'echo plain'], { env: { PATH } });
  plain.stdin!.end();
  assert.deepEqual(await outcome(plain), { stdout: 'plain\n', stderr: '', code: 0 });
});

test('spawnAhead: with no spare waiting, a status pipe still goes through the helper', async () => {
  stopSpares();
  assert.equal(sparesWaiting(), 0);
  const r = await outcome(spawnAhead('sh', ['-c', STATUS_SCRIPT], { env: { PATH }, noInput: true, statusPipe: true }));
  assert.equal(r.code, 4);
  assert.match(r.stdout, /^flags:[0-7]+$/);
});
