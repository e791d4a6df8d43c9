/**
 * Ferry's entry point (lb): the control plane of an HAProxy data plane. `Lb.start` runs HAProxy
 * from a state dir it owns; `apply(routes)` makes it serve the desired routes through the runtime
 * API with no reloads (a hitless reload only when the pool of backends must grow, and it says so);
 * `hold`, `drain`, `stats`, `stop` do what they say. See README.md for the shape of the pool.
 */
export { Lb } from './lb.ts';
export { lbErrors } from './errors.ts';
export type { LbOptions } from './settings.ts';
export type { ApplyResult, DrainPhase, DrainResult, LbEvent } from './events.ts';
export type { LbServiceStats, LbServerStats, ProcInfo, ProcRow } from './stat.ts';
export type { LbBalance, LbHealth, LbMode, LbRoute, LbServer, LbServerState, LbState } from './types.ts';
export { validateRoutes } from './routes.ts';
export { startEntryPoint } from './entrypoint.ts';
export type { EntryPoint, EntryPointOptions } from './entrypoint.ts';
export { desiredRoutes, TCP_ROUTE_SUFFIX } from './desired.ts';
export type { ClusterView, HoldView } from './desired.ts';
