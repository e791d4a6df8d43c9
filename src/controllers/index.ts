/** Controllers: reconcile loops that turn desired state in the store into assignments for agents. */
export { startContainersController, reconcileContainer, nodeSnapshots, assignmentOf } from './containers.ts';
export { allocateAddress, releaseAddresses, releaseNodeAddresses, sweepLeases, ensureClusterNetwork, clusterNetwork, containerOwner, nodeOwner } from './ipam.ts';
export { startLoop } from './loop.ts';
export type { Loop, LoopOptions } from './loop.ts';
export { startMigrationsController } from './migrations.ts';
export type { MigrationDeps } from './migrations.ts';
