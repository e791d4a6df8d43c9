/**
 * Peer 1 of bench/migration: raw runc + CRIU stop-and-copy of the same workload, on Ferry's own
 * bundle (config.json with its user-namespace mappings, a copy of the rootfs) with the network hooks
 * and Ferry's CRIU options dropped. Each container runs under ferry-shim so its stdio are pipes, not
 * host files (CRIU cannot dump those). Dump to a directory, copy it (chowned to the mapped root),
 * restore from the copy under another bundle and id: freeze = dump start → restore returns.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CommandError, processesMentioning, removeCgroupTree, run, timed, waitResident } from './host.ts';

/** The parts of a Ferry-made OCI config.json this peer rewrites. */
export interface BundleConfig {
  root: { path: string; readonly?: boolean };
  linux: { cgroupsPath: string; uidMappings?: { hostID: number }[]; gidMappings?: { hostID: number }[] };
  hooks?: unknown;
  annotations?: Record<string, string>;
  mounts?: { destination: string; source?: string; type?: string; options?: string[] }[];
}

/** One raw CRIU migration, in milliseconds and bytes. */
export interface RawCriuRun {
  dumpMs: number;
  copyMs: number;
  restoreMs: number;
  freezeMs: number;
  bytes: number;
}

/** Total size of the regular files under `dir`. */
export function treeBytes(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) n += treeBytes(p);
    else if (e.isFile()) n += statSync(p).size;
  }
  return n;
}

/** Raw runc + CRIU, in a work directory of its own with its own runc root and cgroup parent. */
export class RawCriuPeer {
  private readonly runcRoot: string;
  private readonly rootfs: [string, string];

  /**
   * @param workDir an empty directory this peer owns (removed by cleanup)
   * @param idPrefix unique to this run; every runc id and the cgroup parent start with it
   */
  constructor(private readonly workDir: string, private readonly idPrefix: string, private readonly shim: string, private readonly criu: string) {
    chmodSync(workDir, 0o755); // the user namespace's root must reach the bundles
    this.runcRoot = join(workDir, 'runc');
    this.rootfs = [join(workDir, 'rootfs-a'), join(workDir, 'rootfs-b')];
  }

  /** The cgroup parent of this peer's containers (one directory per hierarchy). */
  get cgroupParent(): string {
    return `${this.idPrefix}-raw`;
  }

  /** Copies a running Ferry container's root filesystem twice: the source's and the target's. */
  prepareRootfs(ferryRootfs: string): void {
    for (const dst of this.rootfs) run('cp', ['-a', ferryRootfs, dst]);
  }

  /** Moves the workload of `config` once (it must ballast `sizeMiB`); `tag` names this run's files and ids. */
  async migrate(config: BundleConfig, sizeMiB: number, tag: string): Promise<RawCriuRun> {
    const dir = join(this.workDir, tag);
    const [src, dst] = [`${this.idPrefix}-${tag}-a`, `${this.idPrefix}-${tag}-b`];
    const d = { b1: join(dir, 'bundle-a'), b2: join(dir, 'bundle-b'), img1: join(dir, 'image-a'), img2: join(dir, 'image-b'), work1: join(dir, 'work-a'), work2: join(dir, 'work-b') };
    for (const p of Object.values(d)) mkdirSync(p, { recursive: true, mode: 0o755 });
    chmodSync(dir, 0o755);
    this.writeBundle(d.b1, config, this.rootfs[0], src);
    this.writeBundle(d.b2, config, this.rootfs[1], dst);
    try {
      this.launch(src, d.b1, ['run', '-d', '--bundle', d.b1]);
      await waitResident(this.pid(d.b1), sizeMiB);
      const t0 = performance.now();
      const dump = timed(() => run('runc', ['--root', this.runcRoot, '--criu', this.criu, 'checkpoint', '--image-path', d.img1, '--work-path', d.work1, src]));
      const owner = `${config.linux.uidMappings?.[0]?.hostID ?? 0}:${config.linux.gidMappings?.[0]?.hostID ?? 0}`;
      const copy = timed(() => {
        rmSync(d.img2, { recursive: true, force: true });
        run('cp', ['-a', d.img1, d.img2]);
        run('chown', ['-R', owner, d.img2, d.work2]); // the mapped root reads the image on restore
      });
      const restore = timed(() => this.launch(dst, d.b2, ['--criu', this.criu, 'restore', '-d', '--image-path', d.img2, '--work-path', d.work2, '--bundle', d.b2]));
      const freezeMs = performance.now() - t0;
      await waitResident(this.pid(d.b2), sizeMiB, 10_000); // the restored copy runs with the whole ballast
      return { dumpMs: dump.ms, copyMs: copy.ms, restoreMs: restore.ms, freezeMs, bytes: treeBytes(d.img1) };
    } finally {
      for (const id of [src, dst]) spawnSync('runc', ['--root', this.runcRoot, 'delete', '--force', id], { stdio: 'ignore' });
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /** Deletes every container of this peer, its cgroups and its files; returns what had to be forced or stayed. */
  cleanup(): string[] {
    const left: string[] = [];
    let ids: { id: string }[] = [];
    try { ids = JSON.parse(run('runc', ['--root', this.runcRoot, 'list', '-f', 'json']) || 'null') as { id: string }[] ?? []; } catch { /* no root yet */ }
    for (const { id } of ids) {
      left.push(`raw runc container ${id}`);
      spawnSync('runc', ['--root', this.runcRoot, 'delete', '--force', id], { stdio: 'ignore' });
    }
    // Shims end with their container; one still alive was started by this peer and is ended by pid.
    for (const pid of processesMentioning(this.workDir)) {
      left.push(`process ${pid}`);
      try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
    }
    left.push(...removeCgroupTree(this.cgroupParent).map((c) => `cgroup ${c}`));
    rmSync(this.workDir, { recursive: true, force: true });
    return left;
  }

  private writeBundle(dir: string, config: BundleConfig, rootfs: string, id: string): void {
    const cfg = structuredClone(config);
    cfg.root.path = rootfs;
    cfg.linux.cgroupsPath = `/${this.cgroupParent}/${id}`;
    delete cfg.hooks; // no network plumbing: the container keeps the loopback-only namespace runc makes
    delete cfg.annotations?.['org.criu.config']; // plain CRIU, without Ferry's options
    // Files Ferry binds from its own container directory (resolv.conf naming the agent's DNS) are gone
    // with that container: each gets an empty stand-in in this bundle (the ballast program needs none).
    for (const [k, m] of (cfg.mounts ?? []).entries()) {
      if (!m.source || !m.options?.some((o) => o === 'bind' || o === 'rbind') || existsSync(m.source)) continue;
      const standIn = join(dir, `mount-${k}`);
      writeFileSync(standIn, '', { mode: 0o644 });
      m.source = standIn;
    }
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
  }

  /** Runs `runc <args> --pid-file … id` under a new ferry-shim; returns when runc has finished. */
  private launch(id: string, bundle: string, args: string[]): void {
    const f = (n: string): string => join(bundle, n);
    const argv = ['--pid-file', f('shim.pid'), '--container-pid-file', f('container.pid'), '--log', f('container.log'), '--exit', f('exit.json'),
      '--', 'runc', '--root', this.runcRoot, ...args, '--pid-file', f('container.pid'), id];
    const r = spawnSync(this.shim, argv, { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] });
    if (r.status !== 0) throw new CommandError(`runc ${args[0] === '--criu' ? args[2] : args[0]} of ${id} failed (${r.status ?? r.signal}): ${(r.stderr || r.error?.message || '').trim().split('\n').slice(-4).join(' | ')}`);
  }

  private pid(bundle: string): number {
    return Number(readFileSync(join(bundle, 'container.pid'), 'utf8').trim());
  }
}
