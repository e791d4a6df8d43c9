/** The manager's HTTP API. */
export { buildApi } from './server.ts';
export type { ApiDeps } from './server.ts';
export { NodeLeases } from './leases.ts';
export { newToken, checkToken } from './auth.ts';
export { apiErrors } from './errors.ts';
