/**
 * OCI bundle writer: turns a BundleSpec into the `config.json` runc 1.1.5 accepts (runtime spec
 * 1.0.2). Pure `buildConfig` plus a small `writeBundle` that puts it on disk.
 */
import { chmodSync, mkdirSync } from 'node:fs';
import { writeJsonSync } from '../small-files.ts';
import { join } from 'node:path';
import type { BundleSpec, Hook, IdMapping, Resources } from './types.ts';

/** The parts of an OCI runtime config Ferry writes (a subset of the spec's fields). */
export interface OciConfig {
  ociVersion: string;
  process: {
    terminal: boolean;
    user: { uid: number; gid: number; additionalGids?: number[] };
    args: string[];
    env: string[];
    cwd: string;
    capabilities: { bounding: string[]; effective: string[]; permitted: string[] };
    rlimits: { type: string; hard: number; soft: number }[];
    noNewPrivileges: boolean;
  };
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: OciMount[];
  hooks?: { prestart?: OciHook[]; poststop?: OciHook[] };
  annotations?: Record<string, string>;
  linux: {
    uidMappings?: OciIdMapping[];
    gidMappings?: OciIdMapping[];
    resources: OciResources;
    cgroupsPath: string;
    namespaces: { type: string; path?: string }[];
    maskedPaths: string[];
    readonlyPaths: string[];
  };
}

/** One OCI mount entry. */
export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options?: string[];
}

/** One OCI hook entry. */
export interface OciHook {
  path: string;
  args?: string[];
  env?: string[];
  timeout?: number;
}

/** One OCI uid/gid mapping. */
export interface OciIdMapping {
  containerID: number;
  hostID: number;
  size: number;
}

/** OCI linux.resources as runc reads it. */
export interface OciResources {
  devices: { allow: boolean; access: string }[];
  memory?: { limit: number; swap: number };
  cpu?: { quota: number; period: number };
  pids?: { limit: number };
}

/** Options that come from the agent, not from the container's spec. */
export interface BundleOptions {
  /** Parent cgroup (relative to each hierarchy's root); the container gets `/<parent>/<id>`. */
  readonly cgroupParent?: string;
}

/**
 * Capabilities a container gets: containerd's / Docker's default set rather than `runc spec`'s
 * three, because real images (postgres' entrypoint: chown, setuid) need them; in a user namespace
 * they only reach namespaced resources.
 */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

/** Paths masked in every container, as `runc spec` writes them. */
export const DEFAULT_MASKED_PATHS: readonly string[] = [
  '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/sys/firmware', '/proc/scsi',
];

/** Paths made read-only in every container, as `runc spec` writes them. */
export const DEFAULT_READONLY_PATHS: readonly string[] = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** The CFS period Ferry uses; `cpus` scales the quota against it. */
export const CPU_PERIOD_US = 100_000;

/** Default parent cgroup of every container. */
export const DEFAULT_CGROUP_PARENT = 'ferry';

/** CFS quota/period for a CPU share in cores (at least 1 ms per period, the kernel's minimum). */
export function cpuQuota(cpus: number): { quota: number; period: number } {
  return { quota: Math.max(1000, Math.round(cpus * CPU_PERIOD_US)), period: CPU_PERIOD_US };
}

/** The cgroup path runc is given for a container: `/<parent>/<id>`. */
export function cgroupsPathFor(id: string, cgroupParent = DEFAULT_CGROUP_PARENT): string {
  const parent = cgroupParent.replace(/^\/+|\/+$/g, '');
  return parent === '' ? `/${id}` : `/${parent}/${id}`;
}

/** OCI linux.resources for the given limits (memory swap equals the limit: no swap). */
export function ociResources(resources: Resources): OciResources {
  const out: OciResources = { devices: [{ allow: false, access: 'rwm' }] };
  if (resources.memoryBytes !== undefined) out.memory = { limit: resources.memoryBytes, swap: resources.memoryBytes };
  if (resources.cpus !== undefined) out.cpu = cpuQuota(resources.cpus);
  if (resources.pidsLimit !== undefined) out.pids = { limit: resources.pidsLimit };
  return out;
}

function mapping(m: IdMapping): OciIdMapping {
  return { containerID: m.containerId, hostID: m.hostId, size: m.size };
}

function hook(h: Hook): OciHook {
  const out: OciHook = { path: h.path };
  if (h.args) out.args = [...h.args];
  if (h.env) out.env = [...h.env];
  if (h.timeout !== undefined) out.timeout = h.timeout;
  return out;
}

function standardMounts(userns: boolean, newNetns: boolean): OciMount[] {
  // sysfs can only be mounted by a user namespace that also owns the network namespace; without
  // one (host network) fall back to a read-only bind of the host's /sys.
  const sys: OciMount = userns && !newNetns
    ? { destination: '/sys', type: 'bind', source: '/sys', options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'] }
    : { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] };
  return [
    { destination: '/proc', type: 'proc', source: 'proc' },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    sys,
  ];
}

/**
 * The OCI config for a spec. Seccomp is not set yet (no profile shipped); no cgroup mount, so
 * nothing in the container depends on the host's cgroup layout (CRIU restores elsewhere). With a
 * user namespace the rootfs's parent directories must be o+x: the mapped root mounts it.
 */
export function buildConfig(spec: BundleSpec, options: BundleOptions = {}): OciConfig {
  const uidMappings = spec.uidMappings ?? spec.gidMappings;
  const gidMappings = spec.gidMappings ?? spec.uidMappings;
  const userns = uidMappings !== undefined && uidMappings.length > 0;
  const caps = [...DEFAULT_CAPABILITIES];
  const namespaces: { type: string }[] = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  // runc creates every namespace itself: a netns made outside the user namespace cannot be dumped.
  if (spec.newNetns) namespaces.push({ type: 'network' });
  if (userns) namespaces.push({ type: 'user' });

  const config: OciConfig = {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: spec.uid, gid: spec.gid, ...(spec.additionalGids?.length ? { additionalGids: [...spec.additionalGids] } : {}) },
      args: [...spec.args],
      env: [...spec.env],
      cwd: spec.cwd || '/',
      capabilities: { bounding: caps, effective: [...caps], permitted: [...caps] },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: spec.rootfs, readonly: false },
    hostname: spec.hostname,
    mounts: [
      ...standardMounts(userns, spec.newNetns),
      ...spec.mounts.map((m) => ({
        destination: m.destination,
        type: 'bind',
        source: m.source,
        options: ['rbind', 'rprivate', m.readOnly ? 'ro' : 'rw'],
      })),
    ],
    linux: {
      resources: ociResources(spec.resources),
      cgroupsPath: cgroupsPathFor(spec.id, options.cgroupParent),
      namespaces,
      maskedPaths: [...DEFAULT_MASKED_PATHS],
      readonlyPaths: [...DEFAULT_READONLY_PATHS],
    },
  };
  if (userns) {
    config.linux.uidMappings = uidMappings.map(mapping);
    config.linux.gidMappings = (gidMappings ?? uidMappings).map(mapping);
  }
  const prestart = spec.hooks?.prestart ?? [];
  const poststop = spec.hooks?.poststop ?? [];
  if (prestart.length > 0 || poststop.length > 0) {
    config.hooks = {};
    if (prestart.length > 0) config.hooks.prestart = prestart.map(hook);
    if (poststop.length > 0) config.hooks.poststop = poststop.map(hook);
  }
  if (spec.annotations && Object.keys(spec.annotations).length > 0) config.annotations = { ...spec.annotations };
  return config;
}

/**
 * Writes `dir/config.json` for the spec; the dir is 0755 as in the CRIU user-namespace recipe that
 * was measured to work, the file 0600 because env may hold secrets. Returns the config.
 */
export function writeBundle(dir: string, spec: BundleSpec, options: BundleOptions = {}): Promise<OciConfig> {
  const config = buildConfig(spec, options);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  chmodSync(dir, 0o755);
  writeJsonSync(join(dir, 'config.json'), config, { mode: 0o600, pretty: true });
  return Promise.resolve(config);
}
