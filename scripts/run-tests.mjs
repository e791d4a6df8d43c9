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
// The TAP goes through as it comes, except its closing counts: before them goes every failure's
// own report (the YAML block under each `not ok` that is not merely "cancelled by its parent"), so
// the end of a long log says what failed and why without scrolling back through it.
const child = spawn(process.execPath, ['--import', 'tsx', '--test', ...extra, ...files], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
const closing = /^# (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) /;
const held = [];
const failures = [];
let block; // the `not ok` being read: its lines, its indent
createInterface({ input: child.stdout }).on('line', (line) => {
  if (closing.test(line)) { held.push(line); return; }
  process.stdout.write(`${line}\n`);
  const notOk = /^(\s*)not ok \d+ - (.*)$/.exec(line);
  if (notOk) { block = { indent: notOk[1].length, lines: [line.trim()] }; failures.push(block); return; }
  if (!block) return;
  const indent = /^\s*/.exec(line)[0].length;
  if (indent > block.indent || line.trim() === '') block.lines.push(line.slice(block.indent));
  else block = undefined;
});
const code = await new Promise((resolve) => child.on('close', (c) => resolve(c ?? 1)));
const shown = failures.filter((f) => !f.lines.some((l) => l.includes("failureType: 'cancelledByParent'")));
if (shown.length > 0) {
  process.stdout.write(`# == ${shown.length} failure report(s), repeated from above\n`);
  for (const f of shown) for (const l of f.lines.filter((x) => !x.includes('(node:')).slice(0, 30)) process.stdout.write(`# ${l}\n`);
}
for (const l of held) process.stdout.write(`${l}\n`);
process.exit(code);
