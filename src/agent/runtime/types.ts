/**
 * The container runtime contract: what the agent needs from "runc + a supervisor per container".
 * The real implementation drives runc through ferry-shim (native/shim); a fake lives beside it for
 * fast unit tests of the agent's reconcile logic.
 */

/** One uid or gid mapping range of a user namespace. */
export interface IdMapping {
  readonly containerId: number;
  readonly hostId: number;
  readonly size: number;
}

/** A bind mount from the host into the container (a volume). */
export interface BindMount {
  readonly source: string;
  readonly destination: string;
  readonly readOnly: boolean;
}

/** An OCI hook (runs on the host, gets the container state JSON on stdin). */
export interface Hook {
  readonly path: string;
  readonly args?: string[];
  readonly env?: string[];
  readonly timeout?: number;
}

/** An overlay mount to make on the rootfs: mount(2) data, with relative lower dirs resolved against `cwd`. */
export interface RootfsMount {
  readonly options: string;
  readonly cwd?: string;
}

/** CPU/memory/pids limits; undefined means unlimited. */
export interface Resources {
  readonly memoryBytes?: number;
  /** CPU share in cores, e.g. 0.5 → quota 50000 / period 100000. */
  readonly cpus?: number;
  readonly pidsLimit?: number;
}

/** Everything needed to write an OCI bundle and create the container; image-agnostic. */
export interface BundleSpec {
  /** runc container id; unique on the node; also names the cgroup. */
  readonly id: string;
  /** Absolute path to the prepared root filesystem (mounted/copied, or mounted by the shim: see rootfsMount). */
  readonly rootfs: string;
  /** An overlay the shim mounts on `rootfs` just before runc runs (saves a `mount` process per start). */
  readonly rootfsMount?: RootfsMount;
  /**
   * The shim kills the container when this host loses the cluster (the runtime's fence): set for
   * containers the manager would start elsewhere, so two copies never run.
   */
  readonly fenced?: boolean;
  readonly args: string[];
  readonly env: string[];
  readonly cwd: string;
  readonly uid: number;
  readonly gid: number;
  readonly additionalGids?: number[];
  readonly hostname: string;
  readonly resources: Resources;
  readonly mounts: BindMount[];
  /** User namespace mappings; when set, runc creates a user namespace (needed for CRIU here). */
  readonly uidMappings?: IdMapping[];
  readonly gidMappings?: IdMapping[];
  /** When true runc creates a new network namespace (plumbed by a prestart hook); else host network. */
  readonly newNetns: boolean;
  readonly hooks?: { prestart?: Hook[]; poststop?: Hook[] };
  readonly annotations?: Record<string, string>;
}

/** Runtime status as runc reports it (plus `missing` when runc no longer knows the id). */
export type RuntimeStatus = 'creating' | 'created' | 'running' | 'paused' | 'stopped';

/** How a container's main process ended. */
export interface ExitInfo {
  /** Exit code; 128+signal when killed by a signal. */
  readonly exitCode: number;
  readonly signal?: string;
  /** ISO time the supervisor saw the exit. */
  readonly finishedAt: string;
  /** True when the kernel OOM killer ended it (memory cgroup oom_kill count rose). */
  readonly oomKilled?: boolean;
}

/** What the runtime knows about one container. */
export interface RuntimeState {
  readonly id: string;
  readonly status: RuntimeStatus;
  /** Host pid of the container's init, 0 when not running. */
  readonly pid: number;
  /** Host pid of the supervisor (ferry-shim), 0 when it is gone. */
  readonly shimPid: number;
  readonly bundle: string;
  readonly createdAt: string;
  readonly startedAt?: string;
  readonly exit?: ExitInfo;
}

/** One log line (a chunk of output, split at newlines) as the supervisor recorded it. */
export interface LogEntry {
  readonly time: string;
  readonly stream: 'stdout' | 'stderr';
  readonly line: string;
}

/** Point-in-time cgroup figures for autoscaling and `ferry stats`. */
export interface ContainerStats {
  readonly time: string;
  /** Total CPU time used, nanoseconds. */
  readonly cpuUsageNs: number;
  readonly memoryUsageBytes: number;
  /**
   * Anonymous and shared memory (memory.stat anon + shmem; rss + shmem on cgroup v1): about what a
   * checkpoint writes, as the usage also counts the page cache, which it does not. Undefined when unread.
   */
  readonly memoryDumpBytes?: number;
  /** Memory limit in bytes, 0 when unlimited. */
  readonly memoryLimitBytes: number;
  readonly pids: number;
  readonly cgroupVersion: 1 | 2;
}

/** Options of an exec. */
export interface ExecOptions {
  readonly args: string[];
  readonly env?: string[];
  readonly cwd?: string;
  /** Data fed to the process's stdin (closed after); stdin is empty when absent. */
  readonly stdin?: AsyncIterable<Uint8Array> | Uint8Array;
  readonly onStdout: (chunk: Uint8Array) => void;
  readonly onStderr: (chunk: Uint8Array) => void;
  readonly signal?: AbortSignal;
}

/** The runtime: every method is idempotent where the name allows (delete of a missing id is a no-op). */
export interface ContainerRuntime {
  /** Writes the bundle, starts the supervisor and `runc create`; resolves when the container is `created`. */
  create(spec: BundleSpec): Promise<RuntimeState>;
  /** Create and start in one step (`runc run --detach`); resolves when the process runs. */
  run(spec: BundleSpec): Promise<RuntimeState>;
  /** `runc start`; resolves when the process runs. */
  start(id: string): Promise<RuntimeState>;
  /** Sends a signal to the container's init. */
  kill(id: string, signal: string): Promise<void>;
  /** SIGTERM, then SIGKILL after `timeoutMs`; resolves with the exit. */
  stop(id: string, timeoutMs: number): Promise<ExitInfo | undefined>;
  /** Removes the runc container, its supervisor, cgroup and bundle directory (not the rootfs). */
  delete(id: string): Promise<void>;
  /** Current state, or undefined when the id is unknown. */
  state(id: string): Promise<RuntimeState | undefined>;
  /** Every container this runtime manages (found on disk), for re-adoption after an agent restart. */
  list(): Promise<RuntimeState[]>;
  /** Resolves when the container's main process has exited (immediately if it already has). */
  waitExit(id: string, signal?: AbortSignal): Promise<ExitInfo>;
  /** Changes limits in place (`runc update`), no restart. */
  update(id: string, resources: Resources): Promise<void>;
  /** Runs a process inside the container; resolves with its exit code. */
  exec(id: string, options: ExecOptions): Promise<number>;
  /** Freezes every process of the container (cgroup freezer). */
  pause(id: string): Promise<void>;
  /** Thaws a paused container. */
  resume(id: string): Promise<void>;
  /** Dumps the container with CRIU into `imagePath`; with `leaveRunning` it stays as it was (e.g. paused). */
  /** `pageServer` (host:port): memory pages go straight to a CRIU page server there, not into imagePath. */
  /** `parentPath` (relative to imagePath) makes it incremental over that image; `cleanPages` is the */
  /** clean-pages shim's list (native/criu/clean-pages.c) of the pages unchanged since that image. */
  checkpoint(id: string, options: { imagePath: string; workPath?: string; leaveRunning?: boolean; tcpEstablished?: boolean; pageServer?: string; parentPath?: string; cleanPages?: string }): Promise<void>;
  /** Creates the container from a CRIU image instead of starting it; resolves when it runs. */
  restore(spec: BundleSpec, options: { imagePath: string; workPath?: string; extraArgs?: string[] }): Promise<RuntimeState>;
  /** Host pids of every process in the container (from its cgroup). */
  pids(id: string): Promise<number[]>;
  /** Reads cgroup stats. */
  stats(id: string): Promise<ContainerStats>;
  /** The container's output; with `follow` it keeps yielding until the signal aborts or the container exits. */
  logs(id: string, options: { follow?: boolean; tail?: number; signal?: AbortSignal }): AsyncIterable<LogEntry>;
}
