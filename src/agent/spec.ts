/** Turns a container spec plus its image config into the runtime's BundleSpec (pure except for reading /etc/passwd and writing the container's resolv.conf). */
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { ContainerSpec } from '../model/index.ts';
import type { ImageRunConfig } from './images/index.ts';
import type { BundleSpec, Hook, IdMapping, RootfsMount } from './runtime/index.ts';
import { agentErrors } from './errors.ts';
import { resolvConfMount } from './dns/index.ts';

/** Environment merge: later entries replace earlier ones with the same name. */
export function mergeEnv(...lists: string[][]): string[] {
  const m = new Map<string, string>();
  for (const list of lists) for (const e of list) m.set(e.slice(0, e.indexOf('=') === -1 ? e.length : e.indexOf('=')), e);
  return [...m.values()];
}

/** The process args: the spec's entrypoint/command override the image's, as Docker does. */
export function processArgs(spec: ContainerSpec, image: ImageRunConfig, imageRef: string): string[] {
  const entrypoint = spec.entrypoint ?? image.entrypoint;
  const cmd = spec.command ?? (spec.entrypoint ? [] : image.cmd);
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) throw agentErrors.NO_COMMAND({ image: imageRef });
  return args;
}

async function lookup(file: string, name: string): Promise<string[] | undefined> {
  const text = await readFile(file, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f[0] === name) return f;
  }
  return undefined;
}

/** Resolves `user`, `uid`, `user:group`, `uid:gid` against the rootfs' /etc/passwd and /etc/group. */
export async function resolveUser(rootfs: string, user: string): Promise<{ uid: number; gid: number }> {
  if (!user) return { uid: 0, gid: 0 };
  const [u, g] = user.split(':') as [string, string | undefined];
  let uid: number;
  let gid: number | undefined;
  if (/^\d+$/.test(u)) uid = Number(u);
  else {
    const pw = await lookup(join(rootfs, 'etc/passwd'), u);
    if (!pw) throw agentErrors.BAD_USER({ user, reason: `no user "${u}" in /etc/passwd` });
    uid = Number(pw[2]);
    gid = Number(pw[3]);
  }
  if (g !== undefined) {
    if (/^\d+$/.test(g)) gid = Number(g);
    else {
      const gr = await lookup(join(rootfs, 'etc/group'), g);
      if (!gr) throw agentErrors.BAD_USER({ user, reason: `no group "${g}" in /etc/group` });
      gid = Number(gr[2]);
    }
  }
  if (gid === undefined) gid = /^\d+$/.test(u) ? uid : 0;
  if (uid > 65535 || gid > 65535) throw agentErrors.BAD_USER({ user, reason: 'ids above 65535 are outside the container user namespace' });
  return { uid, gid };
}

/** Inputs of `bundleSpec`. */
export interface BundleInputs {
  readonly runtimeId: string;
  readonly name: string;
  readonly spec: ContainerSpec;
  readonly image: ImageRunConfig;
  readonly imageRef: string;
  readonly rootfs: string;
  readonly rootfsMount?: RootfsMount;
  readonly idMap: IdMapping;
  readonly hooks: { prestart: Hook[]; poststop: Hook[] };
}

/** Builds the BundleSpec for a container. */
export async function bundleSpec(i: BundleInputs): Promise<BundleSpec> {
  const { uid, gid } = await resolveUser(i.rootfs, i.spec.user ?? i.image.user);
  const env = mergeEnv(['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], i.image.env, [`HOSTNAME=${i.name}`], i.spec.env);
  // Names of services and containers resolve through the agent's DNS on the gateway; the rootfs sits in the container's directory.
  const dns = await resolvConfMount({ containerDir: dirname(i.rootfs), prestart: i.hooks.prestart, volumeTargets: i.spec.volumes.map((v) => v.target) });
  return {
    id: i.runtimeId,
    rootfs: i.rootfs,
    ...(i.rootfsMount ? { rootfsMount: i.rootfsMount } : {}),
    args: processArgs(i.spec, i.image, i.imageRef),
    env,
    cwd: i.spec.workdir ?? (i.image.workingDir || '/'),
    uid, gid,
    hostname: i.name.replace(/[^a-zA-Z0-9-]/g, '-').slice(0, 63),
    resources: { memoryBytes: i.spec.resources.memoryBytes, cpus: i.spec.resources.cpus, pidsLimit: i.spec.resources.pidsLimit },
    mounts: [...i.spec.volumes.map((v) => ({ source: v.source, destination: v.target, readOnly: v.readOnly })), ...(dns ? [dns] : [])],
    uidMappings: [i.idMap],
    gidMappings: [i.idMap],
    newNetns: true,
    hooks: i.hooks,
    annotations: { 'ferry.name': i.name },
  };
}
