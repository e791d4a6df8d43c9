/**
 * `runc exec` of an extra process in a running container: stdin from the caller, stdout/stderr
 * streamed to callbacks, the exit code returned. runc (non-detached, no terminal) hands its own
 * stdio pipes to the process, so this works inside a user namespace as well.
 */
import { spawn } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { runtimeErrors } from './errors.ts';
import { exitCodeFromStatus, globalArgs, runcMessage } from './runc-cli.ts';
import type { RuncCommand } from './runc-cli.ts';
import type { ExecOptions } from './types.ts';

/** Runs the process; resolves with its exit code, rejects with RUNTIME_EXEC_FAILED when runc could not start it. */
export async function runExec(cmd: RuncCommand, id: string, options: ExecOptions, logFile: string): Promise<number> {
  options.signal?.throwIfAborted();
  const args = [...globalArgs(cmd, logFile), 'exec'];
  for (const e of options.env ?? []) args.push('--env', e);
  if (options.cwd !== undefined) args.push('--cwd', options.cwd);
  args.push(id, ...options.args);

  const child = spawn(cmd.bin, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdout.on('data', (b: Buffer) => options.onStdout(new Uint8Array(b.buffer, b.byteOffset, b.length)));
  child.stderr.on('data', (b: Buffer) => options.onStderr(new Uint8Array(b.buffer, b.byteOffset, b.length)));
  child.stdin.on('error', () => undefined); // the process may exit without reading its input
  const input = options.stdin;
  if (input === undefined) child.stdin.end();
  else if (input instanceof Uint8Array) child.stdin.end(input);
  else Readable.from(input).on('error', () => child.stdin.end()).pipe(child.stdin);

  // runc forwards the signals it gets to the process; SIGKILL to runc would orphan the process instead.
  const onAbort = (): void => {
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 5000).unref();
  };
  options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (c, s) => resolve([c, s]));
    });
    options.signal?.throwIfAborted();
    const exit = exitCodeFromStatus(code, signal);
    if (exit !== 0) {
      // A failure of runc itself (no such binary, bad cwd) is logged by runc at level error;
      // a process that merely exits non-zero is not.
      const log = await readFile(logFile, 'utf8').catch(() => '');
      if (/"level":"(error|fatal)"/.test(log)) {
        throw runtimeErrors.RUNTIME_EXEC_FAILED({ id, reason: runcMessage(log), exitCode: exit });
      }
    }
    return exit;
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    await rm(logFile, { force: true });
  }
}
