/**
 * Prerequisites of integration tests. Outside CI a missing prerequisite skips the test with the reason;
 * under CI=true it fails the test, so a run that could not test for real never looks green.
 */
import type { TestContext } from 'node:test';
import { accessSync, constants } from 'node:fs';
import { execFileSync } from 'node:child_process';

/** True when the run is CI (missing prerequisites must fail). */
export const IN_CI = process.env.CI === 'true' || process.env.CI === '1';

function which(cmd: string): boolean {
  if (cmd.startsWith('/')) {
    try { accessSync(cmd, constants.X_OK); return true; } catch { return false; }
  }
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Returns the reason the machine cannot run real-runtime tests, or undefined when it can. */
export function missingPrerequisite(tools: string[] = []): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (runc, cgroups, mounts and network namespaces)';
  for (const t of tools) if (!which(t)) return `needs ${t} (scripts/setup installs it)`;
  return undefined;
}

/** Skips (locally) or fails (CI) the test when a prerequisite is missing; returns true when it may run. */
export function requirePrerequisites(t: TestContext, tools: string[] = []): boolean {
  const why = missingPrerequisite(tools);
  if (!why) return true;
  if (IN_CI) throw new Error(`prerequisite missing under CI: ${why}`);
  t.skip(why);
  return false;
}

/** Throws when a prerequisite is missing (call from `before` of a suite that is skipped outside CI when missing). */
export function ensurePrerequisites(tools: string[] = []): void {
  const why = missingPrerequisite(tools);
  if (why) throw new Error(`prerequisite missing${IN_CI ? ' under CI' : ''}: ${why}`);
}

/** For `describe(…, { skip })`: the reason to skip outside CI, or false (under CI never skip: fail instead). */
export function skipUnlessReady(tools: string[] = []): string | false {
  return IN_CI ? false : missingPrerequisite(tools) ?? false;
}
