/**
 * Failpoints: named places where a test can make a daemon (agent or manager) die on purpose
 * (SIGKILL, no cleanup), to prove that a restarted one finishes or undoes what was half done. Enabled
 * only through the FERRY_FAILPOINTS environment variable (comma-separated names); a no-op otherwise.
 */
const enabled = new Set((process.env.FERRY_FAILPOINTS ?? '').split(',').map((s) => s.trim()).filter(Boolean));

/** Kills this process at once when failpoint `name` is enabled. */
export function failpoint(name: string): void {
  if (enabled.size > 0 && enabled.has(name)) {
    process.stderr.write(`failpoint ${name}: killing this process (pid ${process.pid})\n`);
    process.kill(process.pid, 'SIGKILL');
  }
}

/** True when failpoint `name` is enabled (for a step that exists only to be interrupted). */
export function failpointEnabled(name: string): boolean {
  return enabled.has(name);
}

/** Throws when failpoint `name` is enabled: a step that fails (not a crash), so the caller's own undo runs. */
export function failpointThrow(name: string): void {
  if (enabled.size > 0 && enabled.has(name)) throw new Error(`failpoint ${name}`);
}
