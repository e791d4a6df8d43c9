/** Polling for integration tests: wait until a condition yields a value, with a bounded time. */

/**
 * Calls `fn` every 100 ms until it returns something other than undefined, and returns that. A
 * throwing `fn` counts as "not yet" (its last error is in the timeout message).
 */
export async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 60_000): Promise<T> {
  const t0 = Date.now();
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
