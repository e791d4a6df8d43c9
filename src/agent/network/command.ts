/**
 * Runs the host tools the node network drives (`ip`, `iptables`) and turns a failure into
 * NET_SETUP_FAILED carrying the tool's stderr.
 */
import { spawnAhead } from '../spawn-ahead.ts';
import { netErrors } from './errors.ts';

/** What a finished command printed. */
export interface CommandOutput {
  readonly stdout: string;
  readonly stderr: string;
}

/** Same PATH the hook uses, so the agent finds the same tools whatever its own environment is. */
export const TOOL_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * Runs `cmd args…` (no shell), feeding `input` on stdin; rejects with NET_SETUP_FAILED on a non-zero
 * exit, naming the command as `describe` says (default: the command line).
 */
export function runCommand(cmd: string, args: readonly string[], options: { input?: string; describe?: string } = {}): Promise<CommandOutput> {
  const { input, describe } = options;
  const command = describe ?? [cmd, ...args].join(' ');
  return new Promise((resolve, reject) => {
    const child = spawnAhead(cmd, args, { env: { ...process.env, PATH: TOOL_PATH, LC_ALL: 'C' } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => reject(netErrors.NET_SETUP_FAILED({ command, stderr: e.message }, e)));
    child.on('close', (code, signal) => {
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8').trim();
      if (code === 0) resolve({ stdout, stderr });
      else reject(netErrors.NET_SETUP_FAILED({ command, stderr: stderr || `exited with ${signal ?? `code ${code}`}`, exitCode: code }));
    });
    // A tool that exits before reading stdin must not crash us with EPIPE.
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(input ?? '');
  });
}

/** Runs `ip -batch -` with one command per line (one fork for many changes); errors list the lines. */
export function ipBatch(lines: readonly string[]): Promise<CommandOutput> {
  return runCommand('ip', ['-batch', '-'], { input: `${lines.join('\n')}\n`, describe: `ip -batch [${lines.join('; ')}]` });
}
