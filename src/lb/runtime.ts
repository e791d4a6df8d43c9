/**
 * Client of HAProxy's runtime API (the admin stats socket, and the master CLI): one connection per
 * command in non-interactive mode, so every answer is exactly what that command printed.
 */
import { createConnection } from 'node:net';
import { lbErrors } from './errors.ts';
import type { RuntimeCommand } from './types.ts';

/** Talks to one HAProxy unix socket. */
export class RuntimeClient {
  constructor(
    /** Path of the unix socket. */
    readonly socketPath: string,
    private readonly timeoutMs = 5000,
  ) {}

  /** Sends one command line and returns HAProxy's whole answer; rejects only when the socket fails. */
  send(command: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      const conn = createConnection(this.socketPath);
      conn.setTimeout(this.timeoutMs, () => conn.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
      conn.on('connect', () => conn.end(`${command}\n`));
      conn.on('data', (b: Buffer) => chunks.push(b));
      conn.on('error', (e) => reject(lbErrors.RUNTIME_COMMAND_FAILED({ command, answer: `socket ${this.socketPath}: ${e.message}` }, e)));
      conn.on('close', (hadError) => { if (!hadError) resolve(Buffer.concat(chunks).toString('utf8')); });
    });
  }

  /** Runs a planned command and checks its answer; rejects with RUNTIME_COMMAND_FAILED naming both. */
  async run(cmd: RuntimeCommand): Promise<string> {
    const answer = await this.send(cmd.command);
    const ok = cmd.ok ? cmd.ok.test(answer) : answer.trim() === '';
    if (!ok) throw lbErrors.RUNTIME_COMMAND_FAILED({ command: cmd.command, answer: answer.trim() || '(empty answer)' });
    return answer;
  }

  /** Runs commands in order, stopping at the first refusal. */
  async runAll(cmds: readonly RuntimeCommand[]): Promise<void> {
    for (const c of cmds) await this.run(c);
  }
}
