/**
 * Shared pieces of the network tests that touch the real host: prerequisites, unique names and
 * subnets per run, and small probes. Not used by the component itself.
 */
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { TOOL_PATH } from './command.ts';

/** Why a real-host test cannot run here, or undefined when it can. */
export function missingPrerequisite(tools: readonly string[]): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root';
  for (const tool of tools) {
    const found = TOOL_PATH.split(':').some((dir) => existsSync(`${dir}/${tool}`));
    if (!found) return `needs ${tool} on PATH`;
  }
  return undefined;
}

/** Skips the test outside CI, fails it under CI=true (a missing prerequisite must not pass silently). */
export function requireHost(t: TestContext, tools: readonly string[]): boolean {
  const missing = missingPrerequisite(tools);
  if (missing === undefined) return true;
  if (process.env.CI === 'true') assert.fail(`prerequisite missing under CI: ${missing}`);
  t.skip(missing);
  return false;
}

/** A per-run name prefix (e.g. `fb3fa9`) so parallel runs never share a link or a file. */
export function runPrefix(): string {
  return `fb${randomBytes(2).toString('hex')}`;
}

/** A random 10.213.X.0/24 that no route on this host uses yet. */
export function freeSubnet(): string {
  const routes = execFileSync('ip', ['-4', 'route', 'show', 'table', 'all'], { encoding: 'utf8' });
  for (let i = 0; i < 100; i++) {
    const x = 1 + Math.floor(Math.random() * 254);
    if (!routes.includes(`10.213.${x}.`)) return `10.213.${x}.0/24`;
  }
  throw new Error('no free 10.213.X.0/24 subnet found');
}

/** Starts `sleep` in a new network namespace (unshare); the caller kills it by pid. */
export async function sleeperInNewNetns(): Promise<ChildProcess & { pid: number }> {
  const child = spawn('unshare', ['--net', 'sleep', '300'], { stdio: 'ignore' });
  await new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('spawn', () => resolve());
  });
  // unshare execs sleep in place; wait until the pid's namespace differs from ours.
  const own = execFileSync('readlink', ['/proc/self/ns/net'], { encoding: 'utf8' });
  for (let i = 0; i < 200; i++) {
    const ns = execFileSync('readlink', [`/proc/${child.pid}/ns/net`], { encoding: 'utf8' });
    if (ns !== own) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  return child as ChildProcess & { pid: number };
}

/** Runs a command inside the network namespace of `pid` and returns its stdout. */
export function inNetns(pid: number, args: readonly string[]): string {
  return execFileSync('nsenter', ['-t', String(pid), '-n', ...args], { encoding: 'utf8' });
}

/** `ip -j` output of a command run in the namespace of `pid` (or the host's when pid is undefined). */
export function ipJson<T>(pid: number | undefined, args: readonly string[]): T {
  const full = ['ip', '-j', ...args];
  const out = pid === undefined ? execFileSync(full[0] as string, full.slice(1), { encoding: 'utf8' }) : inNetns(pid, full);
  return JSON.parse(out === '' ? '[]' : out) as T;
}

/** True when a link of that name exists in this namespace. */
export function linkExists(name: string): boolean {
  try {
    execFileSync('ip', ['link', 'show', 'dev', name], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Sends `request` to host:port, half-closes, and resolves with everything the peer sent before closing. */
export function exchange(host: string, port: number, request: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, allowHalfOpen: true });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(new Error(`no answer from ${host}:${port} in ${timeoutMs} ms`)), timeoutMs);
    socket.on('data', (b: Buffer) => chunks.push(b));
    socket.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    socket.on('end', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    socket.end(request);
  });
}

/** A minimal HTTP GET over a raw socket (no proxy settings can interfere). */
export async function httpGet(host: string, port: number, path: string): Promise<{ status: number; body: string }> {
  const raw = await exchange(host, port, `GET ${path} HTTP/1.0\r\nHost: ${host}\r\n\r\n`);
  const [head = '', body = ''] = raw.split('\r\n\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
  return { status, body };
}

/** Kills a child we started (by its pid) and waits for it to be gone. */
export async function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await gone;
}
