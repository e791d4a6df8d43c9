/** The scheduler: pure placement decisions with explanations. */
export { place } from './placement.ts';
export type { NodeSnapshot, PlacementRequest, PlacementDecision, NodeVerdict } from './placement.ts';
