/**
 * Peer 2 of bench/migration: Podman's own checkpoint/restore of the same workload —
 * `podman container checkpoint --compress none --export=X` + `podman rm` + `podman container restore
 * --import=X`; freeze = checkpoint start → restore returns. Debian's Podman 4.3 runs here only with
 * runc, fixed ulimits and CRIU ≥ 4.2 first on PATH; `--network none` keeps it off networks Ferry did
 * not make. The image comes from the agent's OCI layout, so nothing is pulled.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { CommandError, onPath, removeCgroupTree, run, timed, waitResident, workloadEnv } from './host.ts';

/** One Podman migration, in milliseconds and bytes. */
export interface PodmanRun {
  checkpointMs: number;
  rmMs: number;
  restoreMs: number;
  freezeMs: number;
  bytes: number;
}

/**
 * Installs podman (and skopeo) with apt when missing; returns why it could not, or undefined when it is there.
 * Debian's package only: it is a peer of this benchmark, not a dependency of Ferry.
 */
export function ensurePodman(): string | undefined {
  if (onPath('podman') && onPath('skopeo')) return undefined;
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  try {
    run('apt-get', ['install', '-y', 'podman', 'skopeo'], { env });
  } catch {
    try {
      run('apt-get', ['update'], { env });
      run('apt-get', ['install', '-y', 'podman', 'skopeo'], { env });
    } catch (e) {
      return `podman could not be installed: ${(e as Error).message}`;
    }
  }
  return undefined;
}

/** The `name:tag` of the sample image in an OCI layout's index.json. */
function sampleRef(layout: string): string {
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as { manifests: { annotations?: Record<string, string> }[] };
  const ref = index.manifests.map((m) => m.annotations?.['org.opencontainers.image.ref.name'] ?? '').find((r) => r.startsWith('sample:'));
  if (!ref) throw new CommandError(`no sample:* image in ${layout}/index.json`);
  return ref;
}

/** Podman with its own containers, image tag and cgroup parent, all named after this run. */
/** Podman's lock file, made in /dev/shm by its first command on a host. */
const PODMAN_SHM_LOCK = '/dev/shm/libpod_lock';

export class PodmanPeer {
  private readonly binDir: string;
  private readonly image: string;
  private readonly names = new Set<string>();
  private imported = false;

  /**
   * @param workDir an empty directory this peer owns (removed by cleanup)
   * @param idPrefix unique to this run; container names, the image tag and the cgroup parent start with it
   */
  /** Whether Podman's shared-memory lock file was absent before this peer (then cleanup removes it). */
  private readonly madeLock: boolean;

  constructor(private readonly workDir: string, private readonly idPrefix: string, criu: string) {
    this.binDir = join(workDir, 'bin');
    mkdirSync(this.binDir, { recursive: true });
    symlinkSync(criu, join(this.binDir, 'criu')); // runc, under podman, runs the first `criu` on PATH
    this.image = `localhost/${idPrefix}-sample:latest`;
    this.madeLock = !existsSync(PODMAN_SHM_LOCK);
  }

  /** The cgroup parent of this peer's containers (one directory per hierarchy). */
  get cgroupParent(): string {
    return `${this.idPrefix}-podman`;
  }

  /** Copies the sample image from Ferry's OCI layout into Podman's storage. */
  importImage(layout: string): void {
    run('skopeo', ['copy', '--quiet', `oci:${layout}:${sampleRef(layout)}`, `containers-storage:${this.image}`]);
    this.imported = true;
  }

  /** Moves a fresh `sizeMiB` workload once; `tag` names this run's container and files. */
  async migrate(sizeMiB: number, dirtyPct: number, tag: string): Promise<PodmanRun> {
    const name = `${this.idPrefix}-${tag}`;
    const archive = join(this.workDir, `${tag}.tar`);
    this.names.add(name);
    try {
      this.podman(['run', '-d', '--runtime', 'runc', '--network', 'none', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=4096:4096',
        '--cgroup-parent', `/${this.cgroupParent}`, ...workloadEnv(sizeMiB, dirtyPct).flatMap((e) => ['-e', e]), '--name', name, this.image]);
      await waitResident(this.pid(name), sizeMiB);
      const t0 = performance.now();
      const checkpoint = timed(() => this.podman(['container', 'checkpoint', '--compress', 'none', `--export=${archive}`, name]));
      const rm = timed(() => this.podman(['rm', name]));
      const restore = timed(() => this.podman(['container', 'restore', `--import=${archive}`]));
      const freezeMs = performance.now() - t0;
      await waitResident(this.pid(name), sizeMiB, 10_000); // the restored copy runs with the whole ballast
      return { checkpointMs: checkpoint.ms, rmMs: rm.ms, restoreMs: restore.ms, freezeMs, bytes: statSync(archive).size };
    } finally {
      try { this.podman(['rm', '-f', '--ignore', name]); } catch { /* reported by cleanup */ }
      rmSync(archive, { force: true });
    }
  }

  /** Removes every container and the image this peer made, its cgroups and its files; returns what stayed or had to be forced. */
  cleanup(): string[] {
    const left: string[] = [];
    for (const name of this.names) {
      try {
        if (this.podman(['ps', '-a', '-q', '--filter', `name=^${name}$`]).trim()) {
          left.push(`podman container ${name}`);
          this.podman(['rm', '-f', name]);
        }
      } catch (e) {
        left.push(`podman container ${name}: ${(e as Error).message}`);
      }
    }
    if (this.imported) {
      try { this.podman(['rmi', '-f', this.image]); } catch (e) { left.push(`podman image ${this.image}: ${(e as Error).message}`); }
    }
    left.push(...removeCgroupTree(this.cgroupParent).map((c) => `cgroup ${c}`));
    // Podman's lock file in /dev/shm goes too when its first use was this run's.
    if (this.madeLock) rmSync(PODMAN_SHM_LOCK, { force: true });
    rmSync(this.workDir, { recursive: true, force: true });
    return left;
  }

  private podman(args: string[]): string {
    return run('podman', args, { env: { ...process.env, PATH: `${this.binDir}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}` } });
  }

  private pid(name: string): number {
    return Number(this.podman(['inspect', '--format', '{{.State.Pid}}', name]).trim());
  }
}
