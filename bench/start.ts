/**
 * bench/start: time from the API call to the container's process running, through Ferry (manager →
 * store → controller → agent → rootfs → network → shim → runc), against bare `runc run -d` of the same
 * bundle, alternating in one run. The same bundle: the same config.json (hooks included) and the same
 * root filesystem, a fresh overlayfs of the image's layers with an empty upper dir, as Ferry gives
 * every container — mounted before bare runc's timer starts (Ferry's time includes its mount). A second
 * peer runs the same config on a plain copy of that rootfs (no overlay copy-ups), for reference.
 *
 *   node --import tsx bench/start.ts [--reps 10] [-o json]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, closeSync, openSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { parseArgs } from 'node:util';
import { startFerry, teardownFerry } from '../test/support/ferry.ts';
import { stats } from './support/stats.ts';
import type { ContainerView } from '../src/model/index.ts';

const { values } = parseArgs({ options: { reps: { type: 'string', default: '10' }, o: { type: 'string', short: 'o', default: 'table' } } });
const reps = Number(values.reps);

const f = await startFerry();
const bundleDir = mkdtempSync(join(tmpdir(), `ferry-bench-${f.id}-`));
chmodSync(bundleDir, 0o755); // the user namespace's root must reach the rootfs
const runcRoot = join(bundleDir, 'runc');
try {
  // Warm-up through Ferry; its bundle (config.json + rootfs content) becomes the bare-runc bundle.
  const warm = await f.client.containers.create({ name: 'warm', image: 'sample' }, { wait: true });
  if (warm.status?.phase !== 'running') throw new Error(`warm-up container is ${warm.status?.phase}: ${warm.status?.message}`);
  const id = warm.status.runtimeId;
  const config = JSON.parse(readFileSync(join(f.home, 'agents', f.node, 'runtime', id, 'config.json'), 'utf8')) as {
    root: { path: string }; linux: { cgroupsPath: string };
  };
  execFileSync('cp', ['-a', config.root.path, join(bundleDir, 'rootfs')]);
  // The overlay Ferry mounted for it: the same lower layers serve bare runc's fresh overlays.
  const mountLine = readFileSync('/proc/self/mounts', 'utf8').split('\n').find((l) => l.split(' ')[1] === config.root.path);
  const lowerdir = /(?:^|,)lowerdir=([^,]+)/.exec(mountLine?.split(' ')[3] ?? '')?.[1];
  if (!lowerdir || !lowerdir.startsWith('/')) throw new Error(`cannot read the overlay of ${config.root.path}: ${mountLine}`);
  await f.client.containers.remove('warm', { wait: true, force: true });

  const ferryMs: number[] = [];
  const answeredMs: number[] = [];
  const runcMs: number[] = [];
  const copyMs: number[] = [];
  /** Bare `runc run -d` of `cfg` as container `rid`; the wall time of the call. */
  const bareRun = (cfg: typeof config, rid: string): number => {
    writeFileSync(join(bundleDir, 'config.json'), JSON.stringify(cfg));
    // The detached container inherits runc's stdio: give it a file, not a pipe we would wait on forever.
    const errFile = join(bundleDir, 'runc-stderr.log');
    const errFd = openSync(errFile, 'w');
    const r0 = performance.now();
    const r = spawnSync('runc', ['--root', runcRoot, 'run', '-d', '--bundle', bundleDir, rid], { stdio: ['ignore', 'ignore', errFd] });
    const r1 = performance.now();
    closeSync(errFd);
    if (r.status !== 0) throw new Error(`runc run failed: ${readFileSync(errFile, 'utf8')}`);
    spawnSync('runc', ['--root', runcRoot, 'delete', '--force', rid]);
    return r1 - r0;
  };
  for (let i = 0; i < reps; i++) {
    const wall0 = Date.now();
    const t0 = performance.now();
    const v: ContainerView = await f.client.containers.create({ name: `b${i}`, image: 'sample' }, { wait: true });
    const t1 = performance.now();
    if (v.status?.phase !== 'running' || !(v.status.pid > 0) || !v.status.startedAt) throw new Error(`b${i} is ${v.status?.phase}`);
    // "Process running" = the moment runc returned with the process started (the agent's startedAt, same clock).
    ferryMs.push(Date.parse(v.status.startedAt) - wall0);
    answeredMs.push(t1 - t0);
    await f.client.containers.remove(`b${i}`, { wait: true, force: true });

    // Same bundle: a fresh overlay of the same layers (empty upper dir), mounted before the timer.
    const ov = join(bundleDir, `ov${i}`);
    for (const d of ['upper', 'work', 'rootfs']) mkdirSync(join(ov, d), { recursive: true, mode: 0o755 });
    chownSync(join(ov, 'upper'), 100000, 100000);
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lowerdir},upperdir=${join(ov, 'upper')},workdir=${join(ov, 'work')}`, join(ov, 'rootfs')]);
    try {
      const cfg = structuredClone(config);
      cfg.root.path = join(ov, 'rootfs');
      cfg.linux.cgroupsPath = `/${f.cgroupParent}/${f.id}-bare${i}`;
      runcMs.push(bareRun(cfg, `${f.id}-bare${i}`));
    } finally {
      execFileSync('umount', [join(ov, 'rootfs')]);
      rmSync(ov, { recursive: true, force: true });
    }
    // Reference: the same config on a plain copy of the rootfs.
    const cfg = structuredClone(config);
    cfg.root.path = join(bundleDir, 'rootfs');
    cfg.linux.cgroupsPath = `/${f.cgroupParent}/${f.id}-copy${i}`;
    copyMs.push(bareRun(cfg, `${f.id}-copy${i}`));
  }
  const fs = stats(ferryMs);
  const as = stats(answeredMs);
  const rs = stats(runcMs);
  const cs = stats(copyMs);
  const result = {
    reps, ferryMs: fs, ferryAnsweredMs: as, runcMs: rs, runcPlainCopyMs: cs,
    ratioMedian: fs.median / rs.median, ratioAnsweredMedian: as.median / rs.median, ratioPlainCopyMedian: fs.median / cs.median,
    rawFerryMs: ferryMs, rawAnsweredMs: answeredMs, rawRuncMs: runcMs, rawRuncPlainCopyMs: copyMs,
  };
  if (values.o === 'json') console.log(JSON.stringify(result, null, 2));
  else {
    const row = (n: string, s: typeof fs): string => `${n.padEnd(26)}${s.median.toFixed(0).padStart(8)}${s.p90.toFixed(0).padStart(8)}${s.min.toFixed(0).padStart(8)}${s.max.toFixed(0).padStart(8)}`;
    console.log(`bench/start: API call → process running, ${reps} repetitions each, alternating (ms)`);
    console.log(`${''.padEnd(26)}${'median'.padStart(8)}${'p90'.padStart(8)}${'min'.padStart(8)}${'max'.padStart(8)}`);
    console.log(row('ferry: call → running', fs));
    console.log(row('ferry: call → API answer', as));
    console.log(row('bare runc run -d (overlay)', rs));
    console.log(row('bare runc, plain copy', cs));
    console.log(`ratio ferry/runc, call → running (median): ${result.ratioMedian.toFixed(2)}×   (target ≤ 1.3×; same bundle: overlay rootfs)`);
    console.log(`ratio ferry/runc, call → answer  (median): ${result.ratioAnsweredMedian.toFixed(2)}×`);
    console.log(`ratio ferry/runc on a plain-copy rootfs (median): ${result.ratioPlainCopyMedian.toFixed(2)}×   (reference)`);
    console.log(`raw ferry running: ${ferryMs.map((x) => x.toFixed(0)).join(' ')}`);
    console.log(`raw ferry answer:  ${answeredMs.map((x) => x.toFixed(0)).join(' ')}`);
    console.log(`raw runc overlay:  ${runcMs.map((x) => x.toFixed(0)).join(' ')}`);
    console.log(`raw runc copy:     ${copyMs.map((x) => x.toFixed(0)).join(' ')}`);
  }
} finally {
  if (existsSync(runcRoot)) {
    for (const line of execFileSync('runc', ['--root', runcRoot, 'list', '-q'], { encoding: 'utf8' }).split('\n').filter(Boolean)) {
      spawnSync('runc', ['--root', runcRoot, 'delete', '--force', line]);
    }
  }
  for (const m of readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '').filter((m) => m.startsWith(`${bundleDir}/`))) {
    spawnSync('umount', [m]);
  }
  rmSync(bundleDir, { recursive: true, force: true });
  const left = await teardownFerry(f);
  if (left.length > 0) console.error(`cleanup found leftovers: ${left.join('; ')}`);
}
