/**
 * Commands without a fork of this process. Each `child_process.spawn` of the agent (a Node process of
 * ~200 MB) stops its event loop for ~15 ms while the kernel copies its page tables, and a migration's
 * freeze runs several commands in a row (ip, runc, tar, CRIU): ~100 ms of a freeze went that way.
 * `ferry-exec` spares (native/exec/ferry-exec.c), started while the agent is idle, each become one
 * command in place when asked: same pid, the pipes already this process's.
 *
 * Without spares (not started, all used, or closed) `spawnAhead` is a plain spawn with the same
 * behaviour; used spares are replaced once no command has been run for a moment (a freeze runs its
 * commands closer together), one at a time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface SpawnAheadOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /** Its own session and process group (spawn's `detached`), so a signal to `-pid` reaches all of it. */
  readonly detached?: boolean;
  /** stdin at EOF from the start (spawn's `stdio: ['ignore', …]`). */
  readonly noInput?: boolean;
  /** No pipes at all: stdio from/to /dev/null (a daemon that must outlive this process's pipes). */
  readonly noStdio?: boolean;
  /**
   * The command's fd 3 is the write end of a pipe (O_WRONLY, as `runc --status-fd` wants) whose
   * bytes arrive on the child's stdout; the command's own stdout goes to /dev/null, and the child
   * exits as the command did. Done by the helper (ferry-exec, FLAGS 4): only when canRelayStatus().
   */
  readonly statusPipe?: boolean;
}

/** How many spares wait, by default. */
export const SPARES = 6;
/** How long after the last command used spares are replaced (a freeze runs its commands closer together). */
const REFILL_QUIET_MS = 300;
/** Between two spares of a refill: each is a fork of this process, and a burst of them would be a stall too. */
const REFILL_STEP_MS = 20;

interface Spare {
  readonly child: ChildProcess;
  dead: boolean;
}

let helper: string | undefined;
let target = 0;
const spares: Spare[] = [];
let refill: NodeJS.Timeout | undefined;
let lastUse = 0;

/** Starts `count` spares of `helperPath` (and keeps that many); a missing helper leaves plain spawns. */
export function startSpares(helperPath: string, count = SPARES): boolean {
  if (!existsSync(helperPath)) return false;
  helper = helperPath;
  target = count;
  scheduleRefill(0);
  return true;
}

/** Ends the spares (they see EOF on stdin and exit); later commands are plain spawns. */
export function stopSpares(): void {
  target = 0;
  if (refill) clearTimeout(refill);
  refill = undefined;
  for (const s of spares.splice(0)) s.child.stdin?.end();
}

/** Whether spawnAhead can give a command a status pipe (the helper is there to relay it). */
export function canRelayStatus(): boolean {
  return helper !== undefined;
}

/** Spares waiting now (for tests). */
export function sparesWaiting(): number {
  return spares.filter((s) => !s.dead).length;
}

function scheduleRefill(ms: number): void {
  if (refill) return;
  refill = setTimeout(() => {
    refill = undefined;
    if (!helper || spares.length >= target) return;
    const quietFor = Date.now() - lastUse;
    if (quietFor < REFILL_QUIET_MS) return scheduleRefill(REFILL_QUIET_MS - quietFor);
    spares.push(startSpare(helper));
    if (spares.length < target) scheduleRefill(REFILL_STEP_MS);
  }, ms);
  refill.unref();
}

function startSpare(path: string): Spare {
  const child = spawn(path, [], { stdio: ['pipe', 'pipe', 'pipe'] });
  const s: Spare = { child, dead: false };
  const gone = (): void => {
    s.dead = true;
    const i = spares.indexOf(s);
    if (i >= 0) spares.splice(i, 1);
  };
  child.once('exit', gone);
  child.once('error', gone);
  child.stdin!.on('error', () => undefined); // a dead spare is noticed through `dead`
  // Unref'd until used: a spare never keeps this process alive.
  child.unref();
  for (const stream of [child.stdin, child.stdout, child.stderr]) (stream as unknown as { unref(): void }).unref();
  return s;
}

function request(cmd: string, args: readonly string[], o: SpawnAheadOptions): Buffer {
  const env = Object.entries(o.env ?? process.env).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`);
  const fields = [String((o.detached ? 1 : 0) | (o.noStdio ? 2 : 0) | (o.statusPipe ? 4 : 0)), o.cwd ?? '', String(args.length + 1), cmd, ...args, ...env];
  for (const f of fields) if (f.includes('\0')) throw new Error(`spawnAhead: a NUL byte in ${JSON.stringify(f.slice(0, 40))}`);
  const body = Buffer.from(`${fields.join('\0')}\0`);
  const head = Buffer.alloc(4);
  head.writeUInt32LE(body.length);
  return Buffer.concat([head, body]);
}

/**
 * Runs `cmd` with `args` like `spawn(cmd, args, { stdio: 'pipe' })` (or with the options' equivalents
 * of `detached`, `stdio: ['ignore', …]` and `stdio: 'ignore'`), through a spare when one waits. A
 * command that cannot be run through a spare exits 127 with the reason on stderr instead of an
 * 'error' event.
 */
export function spawnAhead(cmd: string, args: readonly string[], o: SpawnAheadOptions = {}): ChildProcess {
  let s: Spare | undefined;
  while ((s = spares.shift()) && (s.dead || s.child.exitCode !== null)) { /* skip the dead */ }
  lastUse = Date.now();
  if (helper && target > 0) scheduleRefill(REFILL_QUIET_MS);
  if (!s && o.statusPipe) {
    // No spare waits: the helper, started now, does the relaying all the same.
    if (!helper) throw new Error('spawnAhead: a status pipe needs the ferry-exec helper (see canRelayStatus)');
    s = startSpare(helper);
  }
  if (!s) {
    const stdio = o.noStdio ? 'ignore' : o.noInput ? ['ignore', 'pipe', 'pipe'] as const : 'pipe';
    return spawn(cmd, args, { stdio: stdio as 'pipe', ...(o.env ? { env: o.env } : {}), ...(o.cwd ? { cwd: o.cwd } : {}), ...(o.detached ? { detached: true } : {}) });
  }
  const child = s.child;
  child.ref();
  for (const stream of [child.stdin, child.stdout, child.stderr]) (stream as unknown as { ref(): void }).ref();
  const req = request(cmd, args, o);
  if (o.noStdio) {
    child.stdin!.end(req);
    // The command's stdio is /dev/null: these ends carry nothing more.
    child.stdout!.destroy();
    child.stderr!.destroy();
  } else if (o.noInput) {
    child.stdin!.end(req);
  } else {
    child.stdin!.write(req);
  }
  return child;
}
