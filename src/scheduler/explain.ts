/** The words of a decision: scores as shown, what it looked at, why nothing fits. */
import type { NodeVerdict } from './types.ts';

/** A score as shown: at most two decimals, no trailing zeros (as String(Math.round(x * 100) / 100)). */
export function fmt(x: number): string {
  // Whole numbers only: V8 turns small integers into strings far faster than fractions.
  const c = Math.round(x * 100);
  if (c % 100 === 0) return String(c / 100);
  const a = Math.abs(c);
  const frac = a % 100;
  return `${c < 0 ? '-' : ''}${(a - frac) / 100}.${frac < 10 ? `0${frac}` : frac % 10 === 0 ? frac / 10 : frac}`;
}

/** What a decision looked at: `best of 2 feasible; examined 3 of 3 nodes`, plus the sample limit and index cuts. */
export function scopeLine(feasible: number, examined: number, total: number, limit: number | undefined, indexed: string | undefined, cut: number): string {
  let s = limit === undefined
    ? `best of ${feasible} feasible; examined ${examined} of ${total} nodes`
    : `best of ${feasible} feasible; sampled ${examined} of ${total} nodes, the scan stopping at ${limit} feasible`;
  if (indexed !== undefined && cut > 0) s += `; ${cut} ruled out by the ${indexed} index`;
  return s;
}

/** Rejected nodes listed one by one in a failure's reason, at most. */
export const LISTED = 8;

/**
 * Why no node fits: each node's reason when there are few (`examples` holds them all), else counts
 * per filter with an example of each (`examples` holds the first node each filter rejected).
 */
export function failureLine(examples: readonly NodeVerdict[], rejectedCount: number, filters: readonly string[], counts: readonly number[], total: number): string {
  const counted = counts.reduce((a, b) => a + b, 0);
  if (rejectedCount <= LISTED && counted === rejectedCount) return examples.map((v) => `${v.node}: ${v.reason}`).join('; ');
  const parts = filters.flatMap((filter, x) => {
    if (counts[x] === 0) return [];
    const eg = examples.find((v) => v.filter === filter);
    return [eg ? `${filter} ${counts[x]} (e.g. ${eg.node}: ${eg.reason})` : `${filter} ${counts[x]}`];
  });
  return `none of ${total} nodes fits: ${parts.join('; ')}`;
}
