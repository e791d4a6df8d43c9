/** Builders shared by the scheduler's unit tests (not part of the public face). */
import type { NodeSnapshot, NodeVerdict } from './types.ts';

/** One GiB in bytes. */
export const GiB = 1024 ** 3;

/** A ready, empty node with 2 CPUs and 8 GiB, with `o` laid over it. */
export function node(name: string, o: Partial<NodeSnapshot> = {}): NodeSnapshot {
  return { name, ready: true, unschedulable: false, labels: {}, capacity: { cpus: 2, memoryBytes: 8 * GiB }, allocated: { cpus: 0, memoryBytes: 0 }, ...o };
}

/** Verdicts by node name. */
export function byNode(verdicts: readonly NodeVerdict[]): Record<string, NodeVerdict> {
  return Object.fromEntries(verdicts.map((v) => [v.node, v]));
}
