import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { parseLogLine, readLogs } from './logs.ts';
import type { LogSource } from './logs.ts';

const line = (stream: string, text: string): string => `${JSON.stringify({ time: '2025-01-01T00:00:00.000Z', stream, line: text })}\n`;

function source(t: { after: (fn: () => void) => void }): LogSource {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-logs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return { dir, log: join(dir, 'container.log'), exit: join(dir, 'exit.json') };
}

async function collect(src: LogSource, opts: Parameters<typeof readLogs>[1]): Promise<string[]> {
  const out: string[] = [];
  for await (const e of readLogs(src, opts)) out.push(`${e.stream}:${e.line}`);
  return out;
}

test('parseLogLine accepts entries and drops the rest', () => {
  assert.deepEqual(parseLogLine(line('stdout', 'a').trim()), { time: '2025-01-01T00:00:00.000Z', stream: 'stdout', line: 'a' });
  assert.equal(parseLogLine('{"stream":"other","line":"x"}'), undefined);
  assert.equal(parseLogLine('not json'), undefined);
});

test('reads all, tail N (a trailing partial line is not a line yet), and a missing file as empty', async (t) => {
  const src = source(t);
  assert.deepEqual(await collect(src, {}), []);
  const many = Array.from({ length: 5000 }, (_, i) => line(i % 2 ? 'stderr' : 'stdout', `n${i} ${'é'.repeat(20)}`)).join('');
  writeFileSync(src.log, `${many}{"time":"x","stream":"std`);
  const all = await collect(src, {});
  assert.equal(all.length, 5000);
  assert.equal(all[4999], `stderr:n4999 ${'é'.repeat(20)}`);
  assert.deepEqual(await collect(src, { tail: 2 }), all.slice(-2));
  assert.deepEqual(await collect(src, { tail: 0 }), []);
  assert.equal((await collect(src, { tail: 10_000 })).length, 5000);
});

test('follow yields new lines and ends when the exit file appears', async (t) => {
  const src = source(t);
  writeFileSync(src.log, line('stdout', 'first'));
  const got = collect(src, { follow: true, pollMs: 20, signal: AbortSignal.timeout(10_000) });
  setTimeout(() => appendFileSync(src.log, line('stdout', 'second') + line('stderr', 'third').slice(0, 10)), 50);
  setTimeout(() => appendFileSync(src.log, line('stderr', 'third').slice(10)), 100);
  setTimeout(() => writeFileSync(src.exit, '{"exitCode":0}'), 150);
  assert.deepEqual(await got, ['stdout:first', 'stdout:second', 'stderr:third']);
});

test('follow stops quietly on abort', async (t) => {
  const src = source(t);
  writeFileSync(src.log, line('stdout', 'only'));
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 50);
  assert.deepEqual(await collect(src, { follow: true, pollMs: 20, signal: ac.signal }), ['stdout:only']);
});
