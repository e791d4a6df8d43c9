/**
 * Choosing how to move memory (`--strategy auto`) and when pre-copy rounds should stop. Pure; the
 * inputs are measured by the agents (memory size, dirty rate from consecutive dumps, link bandwidth).
 * The constants come from the measurements in shared/notes/live-migration-facts.md.
 */
import type { Strategy } from './phases.ts';
import { formatBytes } from '../model/text.ts';

/** A size for a reason line: "423 KiB", "1.5 GiB". */
const size = (b: number): string => formatBytes(b).replace(/([0-9.])([KMGT]?i?B)$/, '$1 $2');

/** What auto decides from. */
export interface WorkloadFacts {
  /** Resident memory CRIU would dump. */
  readonly memoryBytes: number;
  /** Bytes of memory rewritten per second (from comparing consecutive snapshots); undefined = unknown. */
  readonly dirtyBytesPerSec?: number;
  /** Usable bandwidth between the agents. */
  readonly bandwidthBytesPerSec: number;
}

/** The choice with its reason and the freeze each candidate is expected to cost. */
export interface StrategyChoice {
  readonly strategy: Strategy;
  readonly reason: string;
  readonly estimatesMs: Readonly<Record<Strategy, number>>;
}

/**
 * The freeze's part that does not depend on memory size: two runc+CRIU runs (the dump without pages,
 * the lazy restore), the files between them and the switch. Measured here at 1 GiB: post-copy
 * 0.55–0.76 s; pre-copy with tracked writes 0.61–0.70 s, of which the final delta's pages a few ms.
 */
const FIXED_FREEZE_MS = 550;
/** Post-copy freezes for the fixed part only, whatever the size. */
const POSTCOPY_FREEZE_MS = FIXED_FREEZE_MS;
/** Stop-copy dumps its pages into the target's page server at about this rate (1 GiB: ≈ 0.7 s on top). */
const STOPCOPY_DUMP_BYTES_PER_SEC = 1.5 * 1024 * 1024 * 1024;
/** Above this share of memory rewritten per second, post-copy's fault handling stalls the workload. */
const POSTCOPY_MAX_DIRTY_SHARE_PER_SEC = 0.005;
/**
 * Pre-copy is taken over post-copy when its freeze is expected to be at most this much longer: its
 * source stays whole until the switch (post-copy loses the container if the source dies before every
 * page has arrived), and heavy writes cannot stall it.
 */
const PRECOPY_SAFETY_MARGIN_MS = 200;

/** Estimated freeze of stop-copy: every page crosses inside the freeze, at the slower of the link and the dump. */
export function stopCopyFreezeMs(f: WorkloadFacts): number {
  return FIXED_FREEZE_MS + (1000 * f.memoryBytes) / Math.min(f.bandwidthBytesPerSec, STOPCOPY_DUMP_BYTES_PER_SEC);
}

/** Estimated freeze of pre-copy: only what is written during one final round crosses inside the freeze. */
export function preCopyFreezeMs(f: WorkloadFacts): number {
  const dirty = f.dirtyBytesPerSec ?? f.memoryBytes; // unknown = assume the worst
  const roundSec = f.memoryBytes / f.bandwidthBytesPerSec;
  const lastDelta = Math.min(f.memoryBytes, dirty * Math.max(roundSec, 0.1));
  return FIXED_FREEZE_MS + (1000 * lastDelta) / f.bandwidthBytesPerSec;
}

/** Picks a strategy for `f` (above AUTO_STOP_COPY_MAX_BYTES, see autoStrategy), saying why. */
export function chooseStrategy(f: WorkloadFacts, postCopyAllowed = true): StrategyChoice {
  const estimatesMs = { 'stop-copy': Math.round(stopCopyFreezeMs(f)), 'pre-copy': Math.round(preCopyFreezeMs(f)), 'post-copy': POSTCOPY_FREEZE_MS };
  if (f.memoryBytes <= AUTO_STOP_COPY_MAX_BYTES) {
    return { strategy: 'stop-copy', estimatesMs, reason: `${size(f.memoryBytes)} is small: stop-copy freezes ~${estimatesMs['stop-copy']} ms and cannot lose pages` };
  }
  const rate = f.dirtyBytesPerSec === undefined ? 'unknown' : `${size(f.dirtyBytesPerSec)}/s`;
  const dirtyShare = f.dirtyBytesPerSec === undefined ? undefined : f.dirtyBytesPerSec / f.memoryBytes;
  const converges = f.dirtyBytesPerSec !== undefined && f.dirtyBytesPerSec < f.bandwidthBytesPerSec / 2;
  const quiet = postCopyAllowed && dirtyShare !== undefined && dirtyShare <= POSTCOPY_MAX_DIRTY_SHARE_PER_SEC;
  if (converges && (!quiet || estimatesMs['pre-copy'] <= POSTCOPY_FREEZE_MS + PRECOPY_SAFETY_MARGIN_MS)) {
    return { strategy: 'pre-copy', estimatesMs, reason: `${size(f.memoryBytes)} in memory, written at ${rate}, well under the link (${size(f.bandwidthBytesPerSec)}/s): pre-copy converges, freeze ~${estimatesMs['pre-copy']} ms, and the source stays whole until the switch` };
  }
  if (quiet) {
    return { strategy: 'post-copy', estimatesMs, reason: `${size(f.memoryBytes)} with few writes (${(dirtyShare! * 100).toFixed(2)} %/s) over a link of ${size(f.bandwidthBytesPerSec)}/s: post-copy freezes ~${POSTCOPY_FREEZE_MS} ms whatever the size` };
  }
  return { strategy: 'stop-copy', estimatesMs, reason: f.dirtyBytesPerSec === undefined ? 'dirty rate unknown: stop-copy is the safe choice' : `memory is rewritten faster than the link can follow (${rate}, link ${size(f.bandwidthBytesPerSec)}/s): only stop-copy terminates` };
}

/** Up to this much memory, stop-copy (with pages streamed during the dump) freezes about as briefly as post-copy. */
export const AUTO_STOP_COPY_MAX_BYTES = 256 * 1024 * 1024;
/** How long auto watches a container's writes before it decides (the Precheck takes that much longer). */
export const AUTO_WRITE_WINDOW_MS = 1000;
/** What auto's link probe sends: enough for a rate, little next to the memory it is about to move. */
export const AUTO_PROBE_BYTES = 32 * 1024 * 1024;

/** What autoStrategy decides from: measured before anything moves (see the Precheck of controllers/migrations.ts). */
export interface AutoFacts {
  /** The container's memory a checkpoint writes; undefined = unknown. */
  readonly memoryBytes?: number;
  /** Whether the target can take a post-copy restore (userfaultfd). */
  readonly postCopyAllowed: boolean;
  /** How fast the container writes its memory (the source's write tracker over a second); undefined = not measured. */
  readonly dirtyBytesPerSec?: number;
  /** The link between the agents (`--bandwidth`, else a probe the target fetched); undefined = not measured. */
  readonly bandwidthBytesPerSec?: number;
}

/**
 * `--strategy auto`. Up to AUTO_STOP_COPY_MAX_BYTES stop-copy (as brief as the others, nothing to
 * lose); above, by the measured write rate and link (chooseStrategy); when those could not be
 * measured, post-copy where the target allows it. Measured here: stop-copy freezes 0.4–1.2 s up to
 * 256 MiB and grows with size (1.1–1.4 s at 1 GiB); post-copy and pre-copy froze 0.55–0.76 s at 1 GiB.
 */
export function autoStrategy(f: AutoFacts): { strategy: Strategy; reason: string } {
  if (f.memoryBytes === undefined) return { strategy: 'stop-copy', reason: 'auto: memory size unknown, stop-copy cannot lose state' };
  if (f.memoryBytes <= AUTO_STOP_COPY_MAX_BYTES) {
    return { strategy: 'stop-copy', reason: `auto: ${size(f.memoryBytes)} in memory: stop-copy freezes about as briefly as post-copy and has no window in which the source's failure loses the container` };
  }
  if (f.dirtyBytesPerSec !== undefined && f.bandwidthBytesPerSec !== undefined && f.bandwidthBytesPerSec > 0) {
    const c = chooseStrategy({ memoryBytes: f.memoryBytes, dirtyBytesPerSec: f.dirtyBytesPerSec, bandwidthBytesPerSec: f.bandwidthBytesPerSec }, f.postCopyAllowed);
    return { strategy: c.strategy, reason: `auto: ${c.reason}` };
  }
  if (!f.postCopyAllowed) return { strategy: 'stop-copy', reason: `auto: ${size(f.memoryBytes)} in memory would favour post-copy, but the target does not allow userfaultfd` };
  return { strategy: 'post-copy', reason: `auto: ${size(f.memoryBytes)} in memory, its writes not measured: post-copy's freeze does not grow with size (stop-copy's would); the pages follow within seconds` };
}

/** One completed pre-copy round. */
export interface RoundReport {
  /** Bytes that changed since the previous round (what this round sent). */
  readonly sentBytes: number;
  readonly durationMs: number;
}

/** When pre-copy stops copying and freezes. */
export interface ConvergenceGoal {
  /** Freeze once the last delta would cross the link in at most this long. */
  readonly targetFreezeMs: number;
  readonly bandwidthBytesPerSec: number;
  readonly maxRounds: number;
}

/** Decides after a round whether to freeze now; says why. */
export function precopyDone(rounds: readonly RoundReport[], goal: ConvergenceGoal): { done: boolean; reason: string } {
  const last = rounds[rounds.length - 1];
  if (!last) return { done: false, reason: 'no round yet' };
  const deltaMs = (1000 * last.sentBytes) / goal.bandwidthBytesPerSec;
  if (deltaMs <= goal.targetFreezeMs) return { done: true, reason: `last delta crosses in ${Math.round(deltaMs)} ms ≤ ${goal.targetFreezeMs} ms` };
  if (rounds.length >= goal.maxRounds) return { done: true, reason: `reached the round limit (${goal.maxRounds})` };
  const prev = rounds[rounds.length - 2];
  if (prev && last.sentBytes >= prev.sentBytes * 0.95) return { done: true, reason: 'deltas stopped shrinking: more rounds would not help' };
  return { done: false, reason: `last delta would take ${Math.round(deltaMs)} ms; copying again` };
}
