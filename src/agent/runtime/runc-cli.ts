/**
 * Thin wrapper over the runc command line: runs one command, collects its output, and turns runc's
 * log lines (JSON or logfmt) into a plain message for errors.
 */
import { spawnAhead } from '../spawn-ahead.ts';
import { readFile } from 'node:fs/promises';

/** How to invoke runc on this node. */
export interface RuncCommand {
  /** runc binary. */
  readonly bin: string;
  /** runc's state directory (`--root`). */
  readonly root: string;
  /** CRIU binary for checkpoint/restore (`--criu`). */
  readonly criu?: string;
}

/** What one runc run produced. */
export interface RuncResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The global flags every runc call gets; `logFile` sends runc's own log there (JSON). */
export function globalArgs(cmd: RuncCommand, logFile?: string): string[] {
  const args = ['--root', cmd.root, '--log-format', 'json'];
  if (logFile !== undefined) args.push('--log', logFile);
  return args;
}

/** Runs `runc <global flags> <args>` and resolves with its exit code and output (never rejects on exit codes). */
export function runRunc(cmd: RuncCommand, args: string[], input?: string, env?: NodeJS.ProcessEnv): Promise<RuncResult> {
  return new Promise((resolve, reject) => {
    const child = spawnAhead(cmd.bin, [...globalArgs(cmd), ...args], env ? { env } : {});
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(input ?? '');
    child.on('close', (code, signal) => {
      resolve({
        code: code ?? 128 + signalNumber(signal),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
  });
}

const SIGNALS: Record<string, number> = {
  SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGILL: 4, SIGTRAP: 5, SIGABRT: 6, SIGBUS: 7, SIGFPE: 8, SIGKILL: 9,
  SIGUSR1: 10, SIGSEGV: 11, SIGUSR2: 12, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15, SIGSTKFLT: 16, SIGCHLD: 17,
  SIGCONT: 18, SIGSTOP: 19, SIGTSTP: 20, SIGTTIN: 21, SIGTTOU: 22, SIGURG: 23, SIGXCPU: 24, SIGXFSZ: 25,
  SIGVTALRM: 26, SIGPROF: 27, SIGWINCH: 28, SIGIO: 29, SIGPWR: 30, SIGSYS: 31,
};

/** Linux signal number of a name like `SIGTERM` or `TERM` (0 when unknown). */
export function signalNumber(name: string | null | undefined): number {
  if (!name) return 0;
  const upper = name.toUpperCase();
  return SIGNALS[upper.startsWith('SIG') ? upper : `SIG${upper}`] ?? 0;
}

/** Exit code as a shell reports it: the code, or 128 + the signal's number. */
export function exitCodeFromStatus(code: number | null, signal: string | null | undefined): number {
  if (signal) return 128 + signalNumber(signal);
  return code ?? 0;
}

/** Normalises a signal for `runc kill` (`term`, `15`, `SIGTERM` → `SIGTERM`); undefined when unknown. */
export function normaliseSignal(signal: string): string | undefined {
  if (/^\d+$/.test(signal)) {
    const n = Number(signal);
    return Object.entries(SIGNALS).find(([, v]) => v === n)?.[0];
  }
  const upper = signal.toUpperCase();
  const name = upper.startsWith('SIG') ? upper : `SIG${upper}`;
  return name in SIGNALS ? name : undefined;
}

/**
 * The error text of runc output: `msg` of JSON or logfmt lines at level error/fatal, else the
 * non-empty plain lines (runc prints the final error plainly when `--log` names a file).
 */
export function runcMessage(text: string): string {
  const errors: string[] = [];
  const plain: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    if (line.startsWith('{')) {
      try {
        const entry = JSON.parse(line) as { level?: string; msg?: string };
        if ((entry.level === 'error' || entry.level === 'fatal') && entry.msg) errors.push(entry.msg);
        continue;
      } catch {
        // not JSON after all: keep it as plain text
      }
    }
    const logfmt = /level=(\w+)\s+msg="((?:[^"\\]|\\.)*)"/.exec(line);
    if (logfmt) {
      if (logfmt[1] === 'error' || logfmt[1] === 'fatal') errors.push(logfmt[2]!.replace(/\\(.)/g, '$1'));
      continue;
    }
    plain.push(line);
  }
  const chosen = errors.length > 0 ? errors : plain;
  return [...new Set(chosen)].join('; ') || 'no error message';
}

/** True when runc's message says the container id is unknown. */
export function isNotExist(message: string): boolean {
  return /does not exist|container not found/i.test(message);
}

/** True when runc's message says the container's process is no longer running. */
export function isNotRunning(message: string): boolean {
  return /not running|container .*stopped|process already finished|no such process/i.test(message);
}

/** The last three error lines of a CRIU log file (dump.log, restore.log, …), joined; '' when none or unreadable. */
export async function criuLogErrors(file: string): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.split('\n').filter((l) => /Error|error \(/.test(l)).slice(-3).join(' | ');
}
