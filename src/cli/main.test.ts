import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** A module hook that prints every module URL the process resolves (to stderr, one per line). */
const LIST_MODULES = `data:text/javascript,${encodeURIComponent(
  'import { register } from "node:module";' +
  'register("data:text/javascript," + encodeURIComponent("export async function resolve(s, c, n) { const r = await n(s, c); process.stderr.write(\\"MODULE \\" + r.url + \\"\\\\n\\"); return r; }"));',
)}`;

/** The modules `ferry <args>` loads (relative to the repository). */
async function modulesOf(args: string[]): Promise<string[]> {
  const { stderr } = await run(process.execPath, [
    '--import', LIST_MODULES, '--import', join(ROOT, 'node_modules/tsx/dist/loader.mjs'), join(ROOT, 'src/cli/main.ts'), ...args,
  ], { env: { ...process.env, FERRY_API: 'http://127.0.0.1:9', FERRY_TOKEN: 'x' } });
  return stderr.split('\n').filter((l) => l.startsWith('MODULE file://')).map((l) => l.slice('MODULE file://'.length).replace(ROOT, ''));
}

// Every CLI call pays for the modules it loads (through tsx): the daemons' code (manager, agent, entry
// point, store, HTTP server) and the schema library are loaded only by the commands that run daemons.
test('ferry --help and client commands load no daemon code and no schema library', async () => {
  const mods = await modulesOf(['--help']);
  assert.ok(mods.some((m) => m.endsWith('src/cli/main.ts')), `the listing works: ${mods.slice(0, 5).join(' ')}`);
  const heavy = mods.filter((m) => /node_modules\/(typebox|fastify|better-sqlite3|kysely|undici)\/|src\/(manager|agent|lb|store|api|scheduler)\//.test(m));
  assert.deepEqual(heavy, []);
});
