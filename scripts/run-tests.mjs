#!/usr/bin/env node
// Runs Ferry's tests with Node's runner, which takes no globs: this finds the files and passes them.
// Usage: node scripts/run-tests.mjs unit|integration|all [extra node --test args]
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const kind = process.argv[2] ?? 'all';
const extra = process.argv.slice(3);

function find(dir, out = []) {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) find(p, out);
    else if (name.endsWith('.test.ts')) out.push(relative(root, p));
  }
  return out;
}

const unit = find(join(root, 'src')).sort();
const integration = find(join(root, 'test')).sort();
const files = kind === 'unit' ? unit : kind === 'integration' ? integration : [...unit, ...integration];
if (files.length === 0) {
  console.error(`no ${kind} test files found`);
  process.exit(1);
}
// Unit files run two at a time (they are mostly short processes whose time goes into starting
// Node and loading TypeScript, and each keeps to its own temporary names); integration files run one
// at a time, because they drive real hosts' worth of runc, CRIU, HAProxy and network namespaces and
// wait on real timeouts. `extra` (e.g. --test-concurrency=N) overrides both.
//
// The TAP goes through as it comes, except the closing counts: they are summed over the runs and
// printed once at the very end, after every failure's own report (the YAML block under each
// `not ok` that is not merely "cancelled by its parent"), so the end of a long log says what failed
// and why without scrolling back through it.
const closing = /^# (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) (\d+(?:\.\d+)?)$/;
const counts = new Map();
const failures = [];

function run(list, concurrency) {
  const args = ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, ...extra, ...list];
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  let block; // the `not ok` being read: its lines, its indent
  createInterface({ input: child.stdout }).on('line', (line) => {
    const c = closing.exec(line);
    if (c) { counts.set(c[1], (counts.get(c[1]) ?? 0) + Number(c[2])); return; }
    process.stdout.write(`${line}\n`);
    const notOk = /^(\s*)not ok \d+ - (.*)$/.exec(line);
    if (notOk) { block = { indent: notOk[1].length, lines: [line.trim()] }; failures.push(block); return; }
    if (!block) return;
    const indent = /^\s*/.exec(line)[0].length;
    if (indent > block.indent || line.trim() === '') block.lines.push(line.slice(block.indent));
    else block = undefined;
  });
  return new Promise((resolve) => child.on('close', (c) => resolve(c ?? 1)));
}

const runs = [[files.filter((f) => unit.includes(f)), 2], [files.filter((f) => integration.includes(f)), 1]];
let code = 0;
for (const [list, concurrency] of runs) {
  if (list.length === 0) continue;
  const c = await run(list, concurrency);
  if (c !== 0) code = c;
}
const shown = failures.filter((f) => !f.lines.some((l) => l.includes("failureType: 'cancelledByParent'")));
if (shown.length > 0) {
  process.stdout.write(`# == ${shown.length} failure report(s), repeated from above\n`);
  for (const f of shown) for (const l of f.lines.filter((x) => !x.includes('(node:')).slice(0, 30)) process.stdout.write(`# ${l}\n`);
}
for (const [k, v] of counts) process.stdout.write(`# ${k} ${k === 'duration_ms' ? v.toFixed(3) : v}\n`);
process.exit(code);
