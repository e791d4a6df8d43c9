/** The scheduler: pure placement decisions with explanations. */
export { place } from './placement.ts';
export { placeEvacuee } from './evacuate.ts';
export type { IncomingLoad } from './evacuate.ts';
export type { NodeSnapshot, PlacementRequest, PlacementDecision, NodeVerdict } from './placement.ts';
