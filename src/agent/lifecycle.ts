/**
 * The steps that make and unmake a container on this node, in order. Each step is idempotent so a
 * create interrupted by an agent crash can simply run again (or be torn down) at the next reconcile.
 */
import { writeFileAtomicSync } from './small-files.ts';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Assignment } from '../model/index.ts';
import { failoverRefusal } from '../model/index.ts';
import type { BundleSpec, ContainerRuntime, IdMapping, RuntimeState } from './runtime/index.ts';
import type { ImageStore } from './images/index.ts';
import type { AttachOptions, NodeNetwork } from './network/index.ts';
import type { ContainerRecord, RecordStore } from './records.ts';
import { bundleSpec } from './spec.ts';
import { prepareVolumes, type VolumeRoots } from './volumes.ts';
import { failpoint, failpointEnabled } from '../errors/index.ts';

/** What the lifecycle steps use. */
export interface LifecycleDeps {
  readonly runtime: ContainerRuntime;
  readonly images: ImageStore;
  readonly network: NodeNetwork;
  readonly records: RecordStore;
  readonly idMap: IdMapping;
  readonly log: (msg: string) => void;
  /** This node's name (volume fence tokens and FERRY_NODE name it). */
  readonly node: string;
  /** Where named volumes live: local ones in the agent's data directory, shared ones under the cluster's root. */
  readonly volumes: VolumeRoots;
}


/** Prepares rootfs and network, publishes ports, then creates and starts the container in one runc call. */
export async function createAndStart(d: LifecycleDeps, rec: ContainerRecord, a: Assignment): Promise<RuntimeState> {
  const dir = d.records.containerDir(rec.runtimeId);
  // A leftover runc container from an interrupted create is removed first (its rootfs is kept).
  if (rec.launched) await d.runtime.delete(rec.runtimeId);
  // The overlay itself is mounted by the shim just before runc runs (one syscall instead of a `mount` process).
  const [deferred, att] = await Promise.all([
    d.images.prepareRootfs(rec.runtimeId, a.spec.image, dir, { deferMount: true }), d.network.attach(rec.runtimeId, attachOptions(a)),
  ]);
  let prepared = deferred;
  // A user given by name is looked up in the image's /etc/passwd: that needs the filesystem mounted now.
  if (prepared.mount && !/^\d*(:\d+)?$/.test(a.spec.user ?? prepared.image.config.user)) {
    prepared = await d.images.prepareRootfs(rec.runtimeId, a.spec.image, dir);
  }
  failpoint('create:after-rootfs');
  rec.rootfsMode = prepared.mode;
  rec.ip = att.ip;
  rec.launched = true;
  await d.records.save(rec);
  // Bind sources are made if missing (as Docker does); named volumes resolve to their directories,
  // and a shared one refuses a copy whose epoch has been fenced.
  const volumes = await prepareVolumes(d.volumes, a, d.node, d.idMap);
  // The placement epoch and node, for workloads that stamp what they write (and tests that check fencing).
  const spec = { ...a.spec, volumes, env: [...a.spec.env, `FERRY_EPOCH=${a.epoch}`, `FERRY_NODE=${d.node}`] };
  // Fenced (killed by its shim when this host loses the cluster) only if the manager would start it elsewhere.
  const bundle: BundleSpec = { ...(await bundleSpec({
    runtimeId: rec.runtimeId, name: a.name, spec, image: prepared.image.config, imageRef: a.spec.image,
    rootfs: prepared.path, rootfsMount: prepared.mount, idMap: d.idMap, hooks: att.hooks,
  })), fenced: failoverRefusal(a.spec) === undefined };
  const criuConf = await writeCriuConfig(dir, criuOptions());
  if (a.spec.ports.length > 0) await d.network.publish(rec.runtimeId, att.ip, a.spec.ports);
  let st: RuntimeState;
  try {
    if (failpointEnabled('create:after-runc-create')) {
      await d.runtime.create(withCriuConfig(bundle, criuConf));
      failpoint('create:after-runc-create');
    }
    st = await d.runtime.run(withCriuConfig(bundle, criuConf));
  } catch (e) {
    await d.network.unpublish(rec.runtimeId);
    await d.runtime.delete(rec.runtimeId).catch(() => undefined);
    throw e;
  }
  rec.startedAt = st.startedAt ?? new Date().toISOString();
  rec.appliedResources = { ...a.spec.resources };
  rec.appliedGeneration = a.generation;
  rec.nextRestartAt = undefined;
  await d.records.save(rec);
  return st;
}

/**
 * The directory CRIU may use as its cgroup yard (`cgroup-yard`): `root` when every hierarchy this
 * process is in is mounted there under the name CRIU gives it ("cpu,cpuacct", "systemd" for
 * name=systemd, "unified" for cgroup v2), as on a cgroup-v1 or hybrid host; else undefined (CRIU
 * then mounts each hierarchy in a yard of its own, ≈ 14 ms of every dump and restore here).
 */
export function cgroupYard(selfCgroup: string, mountinfo: string, root = '/sys/fs/cgroup'): string | undefined {
  const mounted = new Set<string>();
  for (const line of mountinfo.split('\n')) {
    const [left, right] = line.split(' - ');
    const fstype = right?.split(' ')[0];
    if (fstype === 'cgroup' || fstype === 'cgroup2') mounted.add(left!.split(' ')[4]!);
  }
  const dirs = selfCgroup.split('\n').filter((l) => l.trim() !== '').map((l) => {
    const ctrls = l.split(':')[1] ?? '';
    return ctrls.split(',').map((c) => (c === '' ? 'unified' : c.startsWith('name=') ? c.slice(5) : c)).join(',');
  });
  return dirs.length > 0 && dirs.every((d) => mounted.has(`${root}/${d}`)) ? root : undefined;
}

let yardOfThisHost: string | null | undefined;

/** cgroupYard of this host, read once. */
function hostCgroupYard(): string | undefined {
  if (yardOfThisHost === undefined) {
    try {
      yardOfThisHost = cgroupYard(readFileSync('/proc/self/cgroup', 'utf8'), readFileSync('/proc/self/mountinfo', 'utf8')) ?? null;
    } catch {
      yardOfThisHost = null;
    }
  }
  return yardOfThisHost ?? undefined;
}

/**
 * CRIU options for dumping a running container (and, with more in front, restoring one): half-open
 * connections are dropped (the client resends its SYN); cgroups are left as runc made them, and on a
 * cgroup-v1 host CRIU finds them where they are mounted (see cgroupYard). `networkLock: 'skip'` only
 * where Ferry itself has cut the container off — a migration source whose veth is down, a target
 * whose veth is not up yet: CRIU's nftables lock then guards nothing and its unlock alone costs
 * ≈ 10–16 ms of the freeze.
 */
export function criuOptions(o: { networkLock?: 'nftables' | 'skip' } = {}): string {
  const yard = hostCgroupYard();
  return `skip-in-flight\nnetwork-lock ${o.networkLock ?? 'nftables'}\nmanage-cgroups ignore\n${yard ? `cgroup-yard ${yard}\n` : ''}`;
}

/** Writes the container's CRIU config file (named by the bundle's org.criu.config annotation). */
export function writeCriuConfig(containerDir: string, options: string): Promise<string> {
  const file = join(containerDir, 'criu.conf');
  writeFileAtomicSync(file, options);
  return Promise.resolve(file);
}

/** The bundle with CRIU told to read `file` for extra options (runc passes it on dump and restore). */
export function withCriuConfig(bundle: BundleSpec, file: string): BundleSpec {
  return { ...bundle, annotations: { ...bundle.annotations, 'org.criu.config': file } };
}

/** Stops (gracefully within `timeoutMs`, or at once when 0) and removes everything the container had on this node. */
export async function teardown(d: LifecycleDeps, rec: ContainerRecord, timeoutMs: number): Promise<void> {
  await d.network.unpublish(rec.runtimeId);
  const st = await d.runtime.state(rec.runtimeId);
  // A frozen container (the source copy of a migration) is never thawed to be stopped: that would let a
  // stale copy run user code while the target runs. `delete --force` kills it frozen.
  if (st && st.status === 'running') {
    if (timeoutMs > 0) await d.runtime.stop(rec.runtimeId, timeoutMs);
    else await d.runtime.kill(rec.runtimeId, 'SIGKILL').catch(() => undefined);
  }
  await d.runtime.delete(rec.runtimeId);
  await d.network.detach(rec.runtimeId);
  await d.images.releaseRootfs(rec.runtimeId, d.records.containerDir(rec.runtimeId));
  await d.records.remove(rec.runtimeId);
}

/** Removes what a crash left without a record: a runc container, an address, a mount, a directory. */
export async function removeOrphan(d: LifecycleDeps, runtimeId: string): Promise<void> {
  d.log(`removing orphaned container ${runtimeId}`);
  await d.network.unpublish(runtimeId);
  await d.runtime.delete(runtimeId);
  await d.network.detach(runtimeId);
  await d.images.releaseRootfs(runtimeId, d.records.containerDir(runtimeId));
  await d.records.remove(runtimeId);
}

/** How the container's network is attached: the address (and named network) the manager leased it. */
export function attachOptions(a: Assignment, mode?: 'up' | 'down'): AttachOptions {
  const n = a.network;
  if (!n) return mode ? { mode } : {};
  return {
    ip: n.ip, ...(mode ? { mode } : {}),
    ...(n.name !== 'default' ? { network: { name: n.name, vni: n.vni, subnet: n.subnet, hostIp: n.hostIp } } : {}),
  };
}
