#!/usr/bin/env node
// Runs Ferry's tests with Node's runner, which takes no globs: this finds the files and passes them.
// Usage: node scripts/run-tests.mjs unit|integration|all [extra node --test args]
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';
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
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', ...extra, ...files], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
