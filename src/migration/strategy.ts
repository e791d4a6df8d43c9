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

/** Dump + restore work that does not depend on memory size (measured 0.2–0.3 s). */
const FIXED_FREEZE_MS = 250;
/** Post-copy freezes only for the non-memory dump and a lazy restore (measured 0.22–0.29 s, any size). */
const POSTCOPY_FREEZE_MS = 280;
/** Above this share of memory rewritten per second, post-copy's fault handling stalls the workload. */
const POSTCOPY_MAX_DIRTY_SHARE_PER_SEC = 0.005;
/** Below this size stop-copy's freeze is already short and it has no failure mode of its own. */
const SMALL_BYTES = 128 * 1024 * 1024;

/** Estimated freeze of stop-copy: everything crosses the link inside the freeze. */
export function stopCopyFreezeMs(f: WorkloadFacts): number {
  return FIXED_FREEZE_MS + (1000 * f.memoryBytes) / f.bandwidthBytesPerSec;
}

/** Estimated freeze of pre-copy: only what is dirtied during one final round crosses inside the freeze. */
export function preCopyFreezeMs(f: WorkloadFacts): number {
  const dirty = f.dirtyBytesPerSec ?? f.memoryBytes; // unknown = assume the worst
  const roundSec = f.memoryBytes / f.bandwidthBytesPerSec;
  const lastDelta = Math.min(f.memoryBytes, dirty * Math.max(roundSec, 0.1));
  return FIXED_FREEZE_MS + (1000 * lastDelta) / f.bandwidthBytesPerSec;
}

/** Picks a strategy for `f`, saying why. */
export function chooseStrategy(f: WorkloadFacts): StrategyChoice {
  const estimatesMs = { 'stop-copy': Math.round(stopCopyFreezeMs(f)), 'pre-copy': Math.round(preCopyFreezeMs(f)), 'post-copy': POSTCOPY_FREEZE_MS };
  if (f.memoryBytes <= SMALL_BYTES) {
    return { strategy: 'stop-copy', estimatesMs, reason: `${size(f.memoryBytes)} is small: stop-copy freezes ~${estimatesMs['stop-copy']} ms and cannot lose pages` };
  }
  const dirtyShare = f.dirtyBytesPerSec === undefined ? undefined : f.dirtyBytesPerSec / f.memoryBytes;
  const converges = f.dirtyBytesPerSec !== undefined && f.dirtyBytesPerSec < f.bandwidthBytesPerSec / 2;
  if (converges && estimatesMs['pre-copy'] <= Math.max(POSTCOPY_FREEZE_MS, 300)) {
    return { strategy: 'pre-copy', estimatesMs, reason: `dirty rate ${size(f.dirtyBytesPerSec!)}/s is well under the link (${size(f.bandwidthBytesPerSec)}/s): pre-copy converges, final delta ~${estimatesMs['pre-copy']} ms, and the source stays whole until the switch` };
  }
  if (dirtyShare !== undefined && dirtyShare <= POSTCOPY_MAX_DIRTY_SHARE_PER_SEC) {
    return { strategy: 'post-copy', estimatesMs, reason: `${size(f.memoryBytes)} with few writes (${(dirtyShare * 100).toFixed(2)} %/s): post-copy freezes ~${POSTCOPY_FREEZE_MS} ms whatever the size` };
  }
  if (converges) {
    return { strategy: 'pre-copy', estimatesMs, reason: `writes too heavy for post-copy's page faults (${((dirtyShare ?? 1) * 100).toFixed(2)} %/s) but pre-copy converges: final delta ~${estimatesMs['pre-copy']} ms` };
  }
  return { strategy: 'stop-copy', estimatesMs, reason: f.dirtyBytesPerSec === undefined ? 'dirty rate unknown: stop-copy is the safe choice' : `memory is rewritten faster than the link can follow (${size(f.dirtyBytesPerSec)}/s): only stop-copy terminates` };
}

/** Up to this much memory, stop-copy (with pages streamed during the dump) freezes about as briefly as post-copy. */
export const AUTO_STOP_COPY_MAX_BYTES = 256 * 1024 * 1024;

/**
 * What `--strategy auto` runs today, from what is known before anything moves: the container's
 * memory and whether the target can take a post-copy restore. (chooseStrategy above needs a measured
 * dirty rate, which only pre-copy rounds would give.) Measured here: stop-copy freezes 0.4–1.2 s up to
 * 256 MiB and grows with size (6 s at 1 GiB); post-copy froze 0.45–0.7 s at every size.
 */
export function autoStrategy(f: { memoryBytes?: number; postCopyAllowed: boolean }): { strategy: Strategy; reason: string } {
  if (f.memoryBytes === undefined) return { strategy: 'stop-copy', reason: 'auto: memory size unknown, stop-copy cannot lose state' };
  if (f.memoryBytes <= AUTO_STOP_COPY_MAX_BYTES) {
    return { strategy: 'stop-copy', reason: `auto: ${size(f.memoryBytes)} in memory: stop-copy freezes about as briefly as post-copy and has no window in which the source's failure loses the container` };
  }
  if (!f.postCopyAllowed) return { strategy: 'stop-copy', reason: `auto: ${size(f.memoryBytes)} in memory would favour post-copy, but the target does not allow userfaultfd` };
  return { strategy: 'post-copy', reason: `auto: ${size(f.memoryBytes)} in memory: post-copy's freeze does not grow with size (stop-copy's would); the pages follow within seconds` };
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
