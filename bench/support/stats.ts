/** Summaries of timing samples, shared by the benchmarks. */

/** Median, p90, extremes and mean of a sample. */
export interface Stats {
  median: number;
  p90: number;
  min: number;
  max: number;
  mean: number;
}

/** Summarises a non-empty sample. */
export function stats(xs: number[]): Stats {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number): number => s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
  return { median: q(0.5), p90: q(0.9), min: s[0]!, max: s[s.length - 1]!, mean: xs.reduce((a, b) => a + b, 0) / xs.length };
}

/** The median of a sample, or undefined when it is empty. */
export function median(xs: number[]): number | undefined {
  return xs.length > 0 ? stats(xs).median : undefined;
}
