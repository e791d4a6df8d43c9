/** Controllers: reconcile loops that turn desired state in the store into assignments for agents. */
export { startContainersController, reconcileContainer, nodeSnapshots, assignmentOf } from './containers.ts';
export type { ContainersControllerOptions } from './containers.ts';
export { ClusterPlacer, fullScanPlacer, listCluster, placementRequest } from './placement.ts';
export type { ClusterListing, Placed, PlacementWrite, Placer, PlacerStats } from './placement.ts';
export { allocateAddress, releaseAddresses, releaseNodeAddresses, sweepLeases, ensureClusterNetwork, clusterNetwork, containerOwner, nodeOwner } from './ipam.ts';
export { startLoop } from './loop.ts';
export type { Loop, LoopOptions } from './loop.ts';
export { startMigrationsController } from './migrations.ts';
export type { MigrationDeps } from './migrations.ts';
export { startServicesController, reconcileService, serviceOfReplica } from './services.ts';
export type { ServiceStep } from './services.ts';
export { planReplicas } from './replicas.ts';
export type { ReplicaGoal, ReplicaPlan, ReplicaState } from './replicas.ts';
export { holdAtEntryPoints, releaseHold, HOLD_ACK_WAIT_MS } from './holds.ts';
export type { Hold } from './holds.ts';
export { startHealthController, noteHeartbeat } from './health.ts';
export type { HealthControllerOptions } from './health.ts';
export { recordEvent } from './events.ts';
