import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { unsupportedFd, scanMigratability } from './dumpable.ts';

test('classifies fd targets', () => {
  for (const ok of ['pipe:[123]', 'socket:[9]', '/dev/null', '/app/data.db', 'anon_inode:[eventfd]', 'anon_inode:[eventpoll]', 'anon_inode:[signalfd]', 'anon_inode:[timerfd]']) {
    assert.equal(unsupportedFd(ok), undefined, ok);
  }
  assert.match(unsupportedFd('anon_inode:inotify')!, /inotify/);
  assert.match(unsupportedFd('anon_inode:[io_uring]')!, /io_uring/);
  assert.match(unsupportedFd('anon_inode:bpf-map')!, /BPF/);
  assert.match(unsupportedFd('/dev/kvm')!, /host device/);
});

test('scans real processes: a plain one is migratable, one holding inotify is not', async (t) => {
  const plain = spawn('sleep', ['30'], { stdio: 'ignore' });
  // python3 opens an inotify instance through libc and then waits.
  const watcher = spawn('python3', ['-c', 'import ctypes,time; fd=ctypes.CDLL(None).inotify_init(); print(fd, flush=True); time.sleep(30)'], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.after(() => { plain.kill('SIGKILL'); watcher.kill('SIGKILL'); });
  await new Promise((r) => watcher.stdout.once('data', r));
  const a = await scanMigratability([plain.pid!]);
  assert.deepEqual([a.ok, a.reasons], [true, []]);
  const b = await scanMigratability([plain.pid!, watcher.pid!]);
  assert.equal(b.ok, false);
  assert.match(b.reasons[0]!, new RegExp(`process ${watcher.pid} \\(python3\\) holds an inotify watch`));
  const none = await scanMigratability([]);
  assert.deepEqual([none.ok, none.reasons], [false, ['no process is running']]);
});
