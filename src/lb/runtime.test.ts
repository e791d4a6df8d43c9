import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RuntimeClient } from './runtime.ts';

// A stand-in for HAProxy's admin socket: answers like 2.6 does in non-interactive mode.
const ANSWERS: Record<string, string> = {
  'set server web_0/s1 state ready': '\n',
  'set server web_0/s9 weight 2': 'No such server.\n\n',
  'set server web_0/s1 addr 10.0.0.1 port 80': "IP changed from '0.0.0.0' to '10.0.0.1', port changed from '+0' to '80' by 'stats socket command'\n\n",
};

describe('lb runtime client', () => {
  let dir = '';
  let server: Server;
  const seen: string[] = [];
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-lb-rt-'));
    server = createServer((s) => {
      let line = '';
      s.on('data', (d) => {
        line += d.toString();
        if (line.endsWith('\n')) {
          seen.push(line.trim());
          s.end(ANSWERS[line.trim()] ?? 'Unknown command.\n\n');
        }
      });
    });
    await new Promise<void>((r) => server.listen(join(dir, 'admin.sock'), r));
  });
  after(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('sends one command per connection and checks the answer', async () => {
    const c = new RuntimeClient(join(dir, 'admin.sock'));
    assert.equal(await c.run({ command: 'set server web_0/s1 state ready' }), '\n');
    await c.run({ command: 'set server web_0/s1 addr 10.0.0.1 port 80', ok: /changed/ });
    await assert.rejects(c.run({ command: 'set server web_0/s9 weight 2' }), (e: Error & { code?: string; details?: Record<string, unknown> }) => {
      assert.equal(e.code, 'FERRY_ERR_RUNTIME_COMMAND_FAILED');
      assert.deepEqual(e.details, { command: 'set server web_0/s9 weight 2', answer: 'No such server.' });
      assert.match(e.message, /haproxy refused "set server web_0\/s9 weight 2": No such server\./);
      return true;
    });
    await assert.rejects(c.runAll([{ command: 'set server web_0/s1 state ready' }, { command: 'bogus' }, { command: 'never sent' }]), { code: 'FERRY_ERR_RUNTIME_COMMAND_FAILED' });
    assert.equal(seen.at(-1), 'bogus', 'runAll stops at the first refusal');
  });

  it('names the socket when it cannot connect', async () => {
    const c = new RuntimeClient(join(dir, 'missing.sock'));
    await assert.rejects(c.send('show info'), (e: Error & { code?: string }) => e.code === 'FERRY_ERR_RUNTIME_COMMAND_FAILED' && /missing\.sock/.test(e.message));
  });
});
