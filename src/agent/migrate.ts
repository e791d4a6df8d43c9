/**
 * The agent's half of a live migration (stop-copy for now). On the source: freeze (cgroup freezer),
 * dump with CRIU leaving the container frozen, pack the writable layer, serve both to the target,
 * and resume on rollback. On the target: fetch that archive over HTTP (never a shared filesystem),
 * unpack the writable layer, restore with CRIU into a fresh network namespace, publish the ports.
 * The manager drives the phases (controllers/migrations.ts); the source copy stays frozen until the
 * switch is recorded and is then killed without ever being thawed.
 */
import { spawn } from 'node:child_process';
import { chmod, chown, mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import type { Assignment } from '../model/index.ts';
import { send } from '../client/index.ts';
import type { LifecycleDeps } from './lifecycle.ts';
import { teardown, writeCriuConfig, withCriuConfig, DUMP_CRIU_OPTIONS } from './lifecycle.ts';
import type { Reconciler } from './reconciler.ts';
import type { ContainerRecord } from './records.ts';
import { bundleSpec } from './spec.ts';
import { agentErrors } from './errors.ts';
import { failpoint } from './failpoints.ts';

/** How long open connections through a published port may take to finish before the freeze. */
const DRAIN_MS = 500;

/** What the migration endpoints use. */
export interface MigrateDeps extends LifecycleDeps {
  readonly dataDir: string;
  readonly idPrefix: string;
  readonly token: string;
  readonly reconciler: Reconciler;
}

/** Runs `tar` with args; rejects with its stderr. */
function tar(args: string[], stdin?: NodeJS.ReadableStream): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn('tar', args, { stdio: [stdin ? 'pipe' : 'ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr?.on('data', (d: Buffer) => { err += d.toString(); });
    if (stdin && p.stdin) stdin.pipe(p.stdin);
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`tar ${args[0]}: ${err.trim() || `exit ${code}`}`))));
  });
}

async function sizeOf(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) total += (await stat(join(e.parentPath, e.name))).size;
  }
  return total;
}

/** The agent side of migrations. */
export class MigrationAgent {
  private readonly d: MigrateDeps;

  constructor(d: MigrateDeps) {
    this.d = d;
  }

  /** Where migration `id` keeps its files on this node. */
  dir(id: string): string {
    if (!/^[a-z0-9-]{1,64}$/.test(id)) throw agentErrors.BAD_REQUEST({ reason: `bad migration id "${id}"` });
    return join(this.d.dataDir, 'migrations', id);
  }

  private record(name: string): ContainerRecord {
    const rec = this.d.reconciler.recordByName(name);
    if (!rec) throw agentErrors.CONTAINER_NOT_FOUND({ id: name });
    return rec;
  }

  /** Source: freeze, dump (staying frozen), pack the writable layer. Returns the archive size. */
  async freeze(id: string, name: string): Promise<{ bytes: number; dumpMs: number }> {
    const rec = this.record(name);
    const dir = this.dir(id);
    await rm(dir, { recursive: true, force: true });
    await mkdir(join(dir, 'image'), { recursive: true, mode: 0o755 });
    rec.outgoing = id;
    await this.d.records.save(rec);
    // Refuse new connections, let requests already in the app finish (bounded), then freeze: a request
    // the app has counted is never cut before its answer leaves.
    await this.d.network.unpublish(rec.runtimeId, DRAIN_MS);
    const t0 = performance.now();
    const st = await this.d.runtime.state(rec.runtimeId);
    if (st?.status === 'running') await this.d.runtime.pause(rec.runtimeId);
    else if (st?.status !== 'paused') throw agentErrors.BAD_REQUEST({ reason: `${name} is ${st?.status ?? 'gone'}, not running` });
    await this.d.runtime.checkpoint(rec.runtimeId, { imagePath: join(dir, 'image'), leaveRunning: true, tcpEstablished: true });
    const dumpMs = performance.now() - t0;
    failpoint('migrate:after-dump');
    const upper = join(this.d.records.containerDir(rec.runtimeId), 'upper');
    await tar(['-c', '--numeric-owner', '--xattrs', '--xattrs-include=*', '-f', join(dir, 'upper.tar'), '-C', upper, '.']);
    return { bytes: await sizeOf(dir), dumpMs };
  }

  /** Source: the archive of migration `id` (CRIU image + writable layer) as a tar stream. */
  archive(id: string): Readable {
    const p = spawn('tar', ['-c', '-C', this.dir(id), '.'], { stdio: ['ignore', 'pipe', 'ignore'] });
    return p.stdout;
  }

  /** Source, rollback: thaw the frozen container and publish its ports again. */
  async resume(id: string, name: string, ports: Assignment['spec']['ports']): Promise<void> {
    const rec = this.record(name);
    const st = await this.d.runtime.state(rec.runtimeId);
    if (st?.status === 'paused') await this.d.runtime.resume(rec.runtimeId);
    if (ports.length > 0 && rec.ip) await this.d.network.publish(rec.runtimeId, rec.ip, ports);
    rec.outgoing = undefined;
    await this.d.records.save(rec);
    await rm(this.dir(id), { recursive: true, force: true });
  }

  /** Target: fetch the archive from the source agent and restore the container from it. */
  async restore(id: string, sourceUrl: string, a: Assignment): Promise<{ runtimeId: string; pid: number; bytes: number; restoreMs: number }> {
    const dir = this.dir(id);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true, mode: 0o755 });
    const res = await send({ url: sourceUrl, token: this.d.token }, 'GET', `v1/migrate/${id}/archive`);
    await tar(['-x', '-C', dir, '--numeric-owner', '-f', '-'], Readable.fromWeb(res.body as never));
    const t0 = performance.now();
    const rec: ContainerRecord = {
      name: a.name, uid: a.uid, runtimeId: `${this.d.idPrefix}${a.name.toLowerCase().slice(0, 40)}-${randomBytes(4).toString('hex')}`,
      epoch: a.epoch, appliedGeneration: a.generation, restartCount: 0, stoppedByUser: false, createdAt: new Date().toISOString(),
      incoming: id, launched: true,
    };
    await this.d.records.save(rec);
    this.d.reconciler.addIncoming(rec);
    try {
      const cdir = this.d.records.containerDir(rec.runtimeId);
      const [prepared, att] = await Promise.all([
        this.d.images.prepareRootfs(rec.runtimeId, a.spec.image, cdir, { deferMount: true }), this.d.network.attach(rec.runtimeId),
      ]);
      // The writable layer goes into the overlay's upper dir before it is mounted (whiteouts and xattrs kept).
      await tar(['-x', '--numeric-owner', '--xattrs', '--xattrs-include=*', '-p', '-f', join(dir, 'upper.tar'), '-C', join(cdir, 'upper')]);
      // The image must be readable by the container's mapped root; established TCP connections are
      // restored closed, since the address changes between nodes until the cluster network lands; the
      // processes are restored stopped (SIGSTOP) and continue only once the switch is recorded, so a
      // copy whose migration rolls back never runs a single instruction.
      const criuConf = await writeCriuConfig(cdir, `tcp-close\nleave-stopped\n${DUMP_CRIU_OPTIONS}`);
      await chownTree(join(dir, 'image'), this.d.idMap.hostId);
      rec.rootfsMode = prepared.mode;
      rec.ip = att.ip;
      const bundle = await bundleSpec({
        runtimeId: rec.runtimeId, name: a.name, spec: a.spec, image: prepared.image.config, imageRef: a.spec.image,
        rootfs: prepared.path, rootfsMount: prepared.mount, idMap: this.d.idMap, hooks: att.hooks,
      });
      const st = await this.d.runtime.restore(withCriuConfig(bundle, criuConf), { imagePath: join(dir, 'image'), workPath: join(dir, 'work') });
      // From now on the file serves the next dump of this container (a chained migration).
      await writeCriuConfig(cdir, DUMP_CRIU_OPTIONS);
      failpoint('migrate:after-restore');
      if (a.spec.ports.length > 0) await this.d.network.publish(rec.runtimeId, att.ip, a.spec.ports);
      rec.startedAt = new Date().toISOString();
      rec.appliedResources = { ...a.spec.resources };
      await this.d.records.save(rec);
      return { runtimeId: rec.runtimeId, pid: st.pid, bytes: await sizeOf(dir), restoreMs: performance.now() - t0 };
    } catch (e) {
      await this.abort(id, a.name).catch(() => undefined);
      throw e;
    }
  }

  /** Target, after the switch is recorded: let the restored (stopped) processes run. */
  async continue(id: string, name: string): Promise<void> {
    const rec = this.record(name);
    if (rec.incoming !== id && rec.incoming !== undefined) throw agentErrors.BAD_REQUEST({ reason: `${name} is not the incoming copy of ${id}` });
    await continueProcesses(this.d, rec);
  }

  /** Target, rollback: remove the incoming copy of migration `id`, if any. */
  async abort(id: string, name: string): Promise<void> {
    const rec = this.d.reconciler.recordByName(name);
    if (rec && rec.incoming === id) {
      await teardown(this.d, rec, 0);
      this.d.reconciler.forget(name);
    }
    await rm(this.dir(id), { recursive: true, force: true });
  }

  /** Either side: remove migration `id`'s files. */
  async cleanup(id: string): Promise<void> {
    await rm(this.dir(id), { recursive: true, force: true });
  }
}

/** Sends SIGCONT to every process of a container restored with leave-stopped; clears `incoming`. */
export async function continueProcesses(d: Pick<MigrateDeps, 'runtime' | 'records'>, rec: ContainerRecord): Promise<void> {
  for (const pid of await d.runtime.pids(rec.runtimeId)) {
    try { process.kill(pid, 'SIGCONT'); } catch { /* exited meanwhile */ }
  }
  if (rec.incoming !== undefined) {
    rec.incoming = undefined;
    await d.records.save(rec);
  }
}

async function chownTree(dir: string, uid: number): Promise<void> {
  await chown(dir, uid, uid);
  await chmod(dir, 0o755);
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) await chown(join(e.parentPath, e.name), uid, uid);
}

