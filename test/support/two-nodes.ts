/**
 * The two-node fixture of the migration tests: Ferry with its first agent (node A) and a second
 * agent (node B) on this machine, set up before the suite and torn down after it, with the teardown
 * failing the suite when anything was left behind. Call inside a `describe`.
 */
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { startFerry, teardownFerry, type TestFerry, type AgentInfo } from './ferry.ts';
import { ensurePrerequisites } from './prereq.ts';
import { freePort, getWithRetry } from './net.ts';
import type { Migration } from '../../src/model/index.ts';
import { TERMINAL } from '../../src/migration/index.ts';
import { until } from './wait.ts';

/** What the migration tests need. */
export const MIGRATION_TOOLS = ['runc', 'ip', 'iptables', '/opt/ferry/bin/criu'];

/** The fixture; its fields are set once `before` has run. */
export interface TwoNodes {
  f: TestFerry;
  a: AgentInfo;
  b: AgentInfo;
}

/** Registers before/after hooks for two nodes; `env` goes to every daemon, `targetEnv` to node B's agent only. */
export function twoNodes(o: { env?: Record<string, string>; targetEnv?: Record<string, string> } = {}): TwoNodes {
  const t = {} as TwoNodes;
  before(async () => {
    ensurePrerequisites(MIGRATION_TOOLS);
    t.f = await startFerry(o.env ? { env: o.env } : {});
    t.a = t.f.agents[0]!;
    t.b = await t.f.addAgent(o.targetEnv);
  });
  after(async () => {
    if (!t.f) return;
    const left = await teardownFerry(t.f);
    assert.deepEqual(left, [], `teardown found leftovers: ${left.join('; ')}`);
  });
  return t;
}

/** The runc containers of one agent. */
export function runcIdsOn(x: AgentInfo): string[] {
  return existsSync(x.runcRoot) ? readdirSync(x.runcRoot).filter((n) => !n.startsWith('.')) : [];
}

/** The sample app's counter behind a published port (each call counts one request). */
export async function counterAt(port: number, attempts?: number): Promise<number> {
  return (JSON.parse(await getWithRetry(`http://127.0.0.1:${port}/`, attempts)) as { count: number }).count;
}

/** Runs the sample app as `name` on `node` with a published port; returns its counter reader. */
export async function runCounter(f: TestFerry, name: string, node: string, extra: string[] = []): Promise<() => Promise<number>> {
  const port = await freePort();
  await f.ok(['run', '--name', name, '--node', node, '-p', `127.0.0.1:${port}:80`, ...extra, 'sample']);
  return () => counterAt(port, 100);
}

/** Migrates `name` to `to` expecting a rollback from `failedIn`; returns the migration. */
export async function migrateRolledBack(f: TestFerry, name: string, to: string, failedIn: string, extra: string[] = []): Promise<Migration> {
  const r = await f.cli(['-o', 'json', 'migrate', name, '--to', to, ...extra]);
  const m = JSON.parse(r.stdout) as Migration;
  assert.equal(r.code, 1);
  assert.equal(m.status.phase, 'RolledBack', JSON.stringify(m.status));
  assert.equal(m.status.failedIn, failedIn);
  return m;
}

/** Waits (up to 90 s) until migration `id` has ended, and returns it. */
export function migrationEnd(f: TestFerry, id: string): Promise<Migration> {
  return until('the migration to end', async () => {
    const x = await f.client.migrations.get(id);
    return TERMINAL.has(x.status.phase) ? x : undefined;
  }, 90_000);
}
