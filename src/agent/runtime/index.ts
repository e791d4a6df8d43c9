/**
 * Container runtime component: runc driven through one ferry-shim supervisor per container, an
 * OCI bundle writer, and an in-memory fake for unit tests. Other components import only this file.
 */
export type {
  BindMount, BundleSpec, ContainerRuntime, ContainerStats, ExecOptions, ExitInfo, Hook, IdMapping, LogEntry, Resources,
  RootfsMount, RuntimeState, RuntimeStatus,
} from './types.ts';
export { createRuncRuntime, containerPid } from './runc.ts';
export type { LazyDump, RestoreOptions, RuncRuntime, RuncRuntimeOptions } from './runc.ts';
export { createFakeRuntime } from './fake.ts';
export type { FakeExecResult, FakeRuntime } from './fake.ts';
export {
  buildConfig, cgroupsPathFor, cpuQuota, CPU_PERIOD_US, DEFAULT_CAPABILITIES, DEFAULT_CGROUP_PARENT, DEFAULT_MASKED_PATHS,
  DEFAULT_READONLY_PATHS, ociResources, writeBundle,
} from './bundle.ts';
export type { BundleOptions, OciConfig, OciHook, OciIdMapping, OciMount, OciResources } from './bundle.ts';
export { containerPaths } from './shim.ts';
export type { ContainerPaths } from './shim.ts';
export { criuLogErrors, exitCodeFromStatus, globalArgs as runcGlobalArgs, normaliseSignal, runcMessage, signalNumber } from './runc-cli.ts';
export type { RuncCommand } from './runc-cli.ts';
export { cgroupVersion, readStats as readCgroupStats } from './cgroups.ts';
export { runtimeErrors } from './errors.ts';
