/** Tuning shared by the backends. */

/** Options of a backend. */
export interface StoreOptions {
  /**
   * Revisions of history kept for watches; older history is compacted away automatically in small
   * batches. `Infinity` keeps everything until `compact` is called. Default 10,000.
   */
  readonly retainRevisions?: number;
}

/** Default history kept for watches that resume from a revision. */
export const DEFAULT_RETAIN_REVISIONS = 10_000;

/** Auto-compaction runs once this many revisions beyond the retained history piled up, so its cost is amortized. */
export const COMPACT_BATCH = 1_000;
