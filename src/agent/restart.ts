/** Restart policy decisions: pure, so every branch is unit-tested. */
import type { RestartPolicy } from '../model/index.ts';

/** What to do about a container whose process exited by itself. */
export type RestartDecision =
  | { action: 'stay'; phase: 'exited' | 'failed'; message: string }
  | { action: 'restart'; delayMs: number; message: string };

/** First backoff delay; doubles per consecutive quick failure up to MAX_BACKOFF_MS (Docker's numbers). */
export const BASE_BACKOFF_MS = 100;
/** Longest wait between restarts. */
export const MAX_BACKOFF_MS = 60_000;
/** A run at least this long resets the backoff. */
export const STABLE_RUN_MS = 10_000;

/** The backoff before restart number `step` (0-based). */
export function backoffMs(step: number): number {
  return Math.min(MAX_BACKOFF_MS, BASE_BACKOFF_MS * 2 ** Math.min(step, 20));
}

/**
 * Decides whether an exited container restarts. `restarts` counts restarts so far (for max retries),
 * `backoffStep` the consecutive quick failures (for the delay).
 */
export function decideRestart(policy: RestartPolicy, exitCode: number, restarts: number, backoffStep: number): RestartDecision {
  if (policy.policy === 'no') return { action: 'stay', phase: exitCode === 0 ? 'exited' : 'failed', message: `exited with code ${exitCode}` };
  if (policy.policy === 'on-failure') {
    if (exitCode === 0) return { action: 'stay', phase: 'exited', message: 'exited with code 0 (on-failure does not restart a success)' };
    if (policy.maxRetries > 0 && restarts >= policy.maxRetries) {
      return { action: 'stay', phase: 'failed', message: `exited with code ${exitCode}; gave up after ${restarts} restarts (on-failure:${policy.maxRetries})` };
    }
  }
  const delayMs = backoffMs(backoffStep);
  return { action: 'restart', delayMs, message: `exited with code ${exitCode}; restarting in ${delayMs} ms (restart ${restarts + 1})` };
}
