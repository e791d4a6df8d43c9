/**
 * "Verify & Migrate": the checks a migration must pass before anything moves, each with a reason a
 * person can act on. Pure: the caller gathers the facts (nodes, container status, image lists).
 */
import type { NodeFacts, Volume } from '../model/index.ts';

/** What the checks need to know about a node. */
export interface NodeCheckFacts {
  readonly name: string;
  readonly ready: boolean;
  readonly unschedulable: boolean;
  readonly capacity: { readonly cpus: number; readonly memoryBytes: number };
  /** Limits of what already runs there. */
  readonly allocated: { readonly cpus: number; readonly memoryBytes: number };
  readonly facts: NodeFacts;
  /** Image ids the node holds. */
  readonly imageIds: readonly string[];
  /** Set when the node is on the cluster network (its overlay address). */
  readonly overlayIp?: string;
}

/** What the checks need to know about the container. */
export interface ContainerCheckFacts {
  readonly name: string;
  readonly phase: string;
  readonly imageId?: string;
  readonly memoryBytes?: number;
  readonly cpus?: number;
  readonly migratable?: { readonly ok: boolean; readonly reasons: readonly string[] };
  /** A migration of it is already under way. */
  readonly migrating: boolean;
  /** Its cluster-network address (it keeps it on any node of the overlay). */
  readonly clusterIp?: string;
}

/** One check's outcome. */
export interface CheckResult {
  readonly check: string;
  readonly ok: boolean;
  readonly reason: string;
}

function version(v: string): [number, number] | undefined {
  const m = /^(\d+)\.(\d+)/.exec(v);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

/** CPU flags the source has and the target lacks (a restore there would die of SIGILL, podman#17496). */
export function missingCpuFlags(source: readonly string[], target: readonly string[]): string[] {
  const have = new Set(target);
  return source.filter((f) => !have.has(f));
}

/** Runs every check; the migration may start only when all are ok. */
export function precheck(c: ContainerCheckFacts, from: NodeCheckFacts, to: NodeCheckFacts, strategy = 'stop-copy'): CheckResult[] {
  const out: CheckResult[] = [];
  const add = (check: string, ok: boolean, good: string, bad: string): void => { out.push({ check, ok, reason: ok ? good : bad }); };

  add('distinct-nodes', from.name !== to.name, `from ${from.name} to ${to.name}`, `${c.name} already runs on ${to.name}`);
  add('container-running', c.phase === 'running', 'it is running', `${c.name} is ${c.phase}; only a running container migrates (start it, or just move its definition)`);
  add('not-migrating', !c.migrating, 'no other migration of it is under way', `${c.name} is already being migrated; wait for it or cancel it`);
  add('dumpable', c.migratable?.ok === true, 'CRIU can checkpoint every process and file it holds',
    c.migratable ? `CRIU cannot checkpoint it: ${c.migratable.reasons.join('; ')}` : 'not checked yet (the agent reports it while the container runs)');
  add('target-ready', to.ready && !to.unschedulable, `${to.name} is ready`, `${to.name} is ${to.ready ? 'unschedulable (drained)' : 'not ready'}`);
  const freeMem = to.capacity.memoryBytes - to.allocated.memoryBytes;
  const freeCpu = to.capacity.cpus - to.allocated.cpus;
  add('target-capacity', (c.memoryBytes ?? 0) <= freeMem && (c.cpus ?? 0) <= freeCpu + 1e-9,
    `${to.name} has room`, `${to.name} has ${Math.floor(freeMem / 1048576)} MiB and ${freeCpu.toFixed(2)} CPUs free; ${c.name} needs ${Math.ceil((c.memoryBytes ?? 0) / 1048576)} MiB and ${c.cpus ?? 0} CPUs`);
  add('same-architecture', from.facts.arch === to.facts.arch, `both ${to.facts.arch}`, `${from.name} is ${from.facts.arch}, ${to.name} is ${to.facts.arch}`);
  const missing = missingCpuFlags(from.facts.cpuFlags, to.facts.cpuFlags);
  add('cpu-features', missing.length === 0, `${to.name} has every CPU feature of ${from.name}`,
    `${to.name} lacks CPU features the process may use: ${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ` and ${missing.length - 8} more` : ''} (a restore there could die of SIGILL)`);
  const cf = version(from.facts.criu);
  const ct = version(to.facts.criu);
  const criuOk = !!cf && !!ct && (ct[0] > 4 || (ct[0] === 4 && ct[1] >= 2)) && (ct[0] > cf[0] || (ct[0] === cf[0] && ct[1] >= cf[1]));
  add('criu', criuOk, `CRIU ${to.facts.criu} on ${to.name} reads images of CRIU ${from.facts.criu}`,
    `CRIU on ${to.name} is ${to.facts.criu} and on ${from.name} ${from.facts.criu}: the target needs ≥ 4.2 and not older than the source`);
  add('cgroup-version', from.facts.cgroupVersion === to.facts.cgroupVersion, `both cgroup v${to.facts.cgroupVersion}`,
    `${from.name} uses cgroup v${from.facts.cgroupVersion}, ${to.name} v${to.facts.cgroupVersion}`);
  if (c.clusterIp !== undefined) {
    add('address', to.overlayIp !== undefined, `it keeps its address ${c.clusterIp} and its open connections (cluster network)`,
      `${to.name} is not on the cluster network (its agent runs without --underlay-ip), so ${c.name}'s address ${c.clusterIp} cannot move there`);
  } else {
    out.push({ check: 'address', ok: true, reason: `its address changes (node-local networks, no cluster network): established TCP connections are closed and clients reconnect` });
  }
  const hasImage = c.imageId !== undefined && to.imageIds.includes(c.imageId);
  add('image-on-target', hasImage, `${to.name} holds the image`, `${to.name} does not hold the image ${c.imageId ?? '?'}; it is copied there first`);
  if (strategy === 'post-copy') {
    // The restored process takes its page faults through userfaultfd, inside its user namespace.
    add('userfaultfd', to.facts.userfaultfd === true, `${to.name} allows userfaultfd in user namespaces`,
      `${to.name} does not allow userfaultfd for user-namespaced containers: run \`sysctl -w vm.unprivileged_userfaultfd=1\` there (scripts/setup does), or use --strategy stop-copy`);
    // Not a blocker, but the one risk post-copy adds: say it before anything moves.
    out.push({ check: 'post-copy-risk', ok: true, reason: `until every page has reached ${to.name}, ${c.name}'s memory lives partly on ${from.name}: if ${from.name} fails in that window (seconds), the container's state is lost and it restarts from its image (as QEMU's post-copy)` });
  } else if (to.facts.userfaultfd === true) {
    // A large image is restored lazily from the target's own copy (migrate.ts, LAZY_RESTORE_MIN_BYTES).
    out.push({ check: 'lazy-restore', ok: true, reason: `if its image holds 128 MiB of pages or more, ${to.name} restores it lazily from its own copy: for the seconds until every page is in, a CRIU daemon on ${to.name} holds the rest of its memory (not ${from.name}); if that daemon fails, the container's state is lost and it restarts from its image` });
  }
  return out;
}

/** Names of the host-local named volumes among `volumes`: the ones a migration copies. */
export function localVolumeNames(volumes: readonly Volume[]): string[] {
  return volumes.filter((v) => v.kind === 'local').map((v) => v.source);
}

/**
 * What happens to the container's volumes: host-local named volumes move with it (copied while it
 * runs, the changes during the freeze) unless another container on the source uses one too; shared
 * volumes stay where every host sees them; a writable host directory (bind mount) would not follow.
 * `others` are the other containers placed on the source node.
 */
export function volumeCheck(name: string, volumes: readonly Volume[], others: readonly { readonly name: string; readonly volumes: readonly Volume[] }[]): CheckResult {
  const binds = volumes.filter((v) => (v.kind ?? 'bind') === 'bind' && !v.readOnly);
  if (binds.length > 0) {
    const list = binds.map((v) => `${v.source} (at ${v.target})`).join(', ');
    return { check: 'volumes', ok: false, reason: `${name} writes to host directories that would not move with it: ${list}; use a named volume (-v name:${binds[0]!.target}), whose data moves, or a shared one (--shared-volume)` };
  }
  const local = localVolumeNames(volumes);
  const sharing = others.flatMap((o) => localVolumeNames(o.volumes).filter((v) => local.includes(v)).map((v) => `${v} (also used by ${o.name})`));
  if (sharing.length > 0) return { check: 'volumes', ok: false, reason: `${name}'s local volumes cannot move while other containers on its node use them: ${sharing.join(', ')}` };
  if (local.length > 0) return { check: 'volumes', ok: true, reason: `its local volumes (${local.join(', ')}) move with it: copied while it runs, what changed since copied during the freeze` };
  return { check: 'volumes', ok: true, reason: 'no host-local data to move (its writable layer travels with it)' };
}

/** The checks that must pass (a missing image is fixed by copying it, so it only warns). */
export function blocking(results: readonly CheckResult[]): CheckResult[] {
  return results.filter((r) => !r.ok && r.check !== 'image-on-target');
}
