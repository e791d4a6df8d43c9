/**
 * bench/dirty-track: what a pre-copy final round must read, with and without write tracking. The
 * sample app holds BALLAST_MB of memory and rewrites DIRTY_PCT_PER_SEC of it each second; after a
 * while, the process is stopped and
 *   - ferry-dirty-track scans it and reads only the pages written since the last scan (Ferry), vs
 *   - every page of its private mappings is read (the peer: what a full final dump must at least read;
 *     CRIU's own dump does this and more).
 * Prints both times, the ratio, and how many pages each read.
 *
 *   node --import tsx bench/dirty-track.ts [--mb 1024] [--dirty 1] [--wait 1] [--reps 3]
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { DIRTY_TRACK_PATH, DirtyTracker, type Range } from '../src/agent/dirty-track.ts';
import { freePort } from '../test/support/net.ts';

const SAMPLE = fileURLToPath(new URL('../build/sample-app', import.meta.url));
const { values } = parseArgs({ options: { mb: { type: 'string', default: '1024' }, dirty: { type: 'string', default: '1' }, wait: { type: 'string', default: '1' }, reps: { type: 'string', default: '3' } } });
const [mb, dirty, waitS, reps] = [Number(values.mb), Number(values.dirty), Number(values.wait), Number(values.reps)];
for (const p of [SAMPLE, DIRTY_TRACK_PATH]) if (!existsSync(p)) throw new Error(`${p} is missing: run scripts/setup first`);

const PAGE = 4096;
const buf = Buffer.alloc(1 << 20);

/** Reads [start, end) of `pid`'s memory through `fd` (/proc/PID/mem) in 1 MiB pieces; returns bytes read. */
function readRange(fd: number, start: number, end: number): number {
  let n = 0;
  for (let at = start; at < end; at += buf.length) {
    try { n += readSync(fd, buf, 0, Math.min(buf.length, end - at), at); } catch { /* unreadable: nothing a dump writes */ }
  }
  return n;
}

/** Every private mapping of `pid`. */
function privateMappings(pid: number): Range[] {
  return readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').flatMap((l) => {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4})\s+\S+\s+\S+\s+\S+\s*(.*)$/.exec(l);
    return m && m[3]![3] === 'p' && !/^\[(vdso|vvar|vvar_vclock|vsyscall)\]$/.test(m[4]!) ? [[BigInt(`0x${m[1]}`), BigInt(`0x${m[2]}`)] as const] : [];
  });
}

const child = spawn(SAMPLE, [], { env: { PORT: String(await freePort()), BALLAST_MB: String(mb), DIRTY_PCT_PER_SEC: String(dirty) }, stdio: 'ignore' });
const pid = child.pid as number;
const tracker = DirtyTracker.start();
try {
  // Until the ballast is touched (its RSS is there).
  for (let i = 0; i < 600; i++) {
    const rss = Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
    if (rss >= mb * 1048576 * 0.95) break;
    await sleep(100);
  }
  await tracker.track(pid);
  const first = await tracker.scan();
  console.log(`sample app: ${mb} MiB, ${dirty}%/s dirtied; tracking began (first scan: ${first.untrackedPages} pages untracked)`);
  const rows: { ferryMs: number; peerMs: number; ferryPages: number; peerPages: number }[] = [];
  for (let r = 1; r <= reps; r++) {
    await sleep(waitS * 1000);
    process.kill(pid, 'SIGSTOP');
    const fd = openSync(`/proc/${pid}/mem`, 'r');
    try {
      const t0 = performance.now();
      const scan = await tracker.scan();
      let ferryBytes = 0;
      for (const p of scan.processes) for (const [s, e] of [...p.written, ...p.untracked]) ferryBytes += readRange(fd, Number(s), Number(e));
      const ferryMs = performance.now() - t0;
      const t1 = performance.now();
      let peerBytes = 0;
      for (const [s, e] of privateMappings(pid)) peerBytes += readRange(fd, Number(s), Number(e));
      const peerMs = performance.now() - t1;
      rows.push({ ferryMs, peerMs, ferryPages: ferryBytes / PAGE, peerPages: peerBytes / PAGE });
      console.log(`rep ${r}: scan + read written pages ${ferryMs.toFixed(1)} ms (${ferryBytes / PAGE} pages; scan said ${scan.writtenPages} written, ${scan.untrackedPages} untracked) | read all ${peerMs.toFixed(1)} ms (${peerBytes / PAGE} pages) | ratio ${(peerMs / ferryMs).toFixed(1)}×`);
    } finally {
      closeSync(fd);
      process.kill(pid, 'SIGCONT');
    }
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const [f, p] = [median(rows.map((x) => x.ferryMs)), median(rows.map((x) => x.peerMs))];
  console.log(`median: tracked ${f.toFixed(1)} ms vs read-all ${p.toFixed(1)} ms → ${(p / f).toFixed(1)}× less time, ${(median(rows.map((x) => x.peerPages)) / Math.max(1, median(rows.map((x) => x.ferryPages)))).toFixed(0)}× fewer pages`);
} finally {
  await tracker.stop();
  if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGKILL');
}
