/**
 * The dashboard's files (web/, built by scripts/setup into build/dashboard) at /ui/, without a token:
 * they are the same for everyone and hold no data; the page then calls /v1 with the cluster token
 * the user gives it, like the CLI. GET / leads there.
 */
import { readFile, stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { dirname, extname, join, normalize, resolve, sep } from 'node:path';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { defineErrors } from '../../errors/index.ts';

/** Errors of the dashboard's files. */
export const dashboardErrors = defineErrors({
  DASHBOARD_NOT_BUILT: { status: 503, message: 'the dashboard is not built ({dir} has no index.html): run ./scripts/setup in the Ferry repository, then reload' },
});

/** Where scripts/setup puts the built dashboard (this file is src/api/routes/dashboard.ts). */
export const DASHBOARD_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../../build/dashboard');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon', '.json': 'application/json', '.map': 'application/json', '.woff2': 'font/woff2',
};

const escapeHtml = (s: string): string => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

/** A page a browser shows, with the error's code and message, when there is nothing built to serve. */
function notBuilt(reply: FastifyReply, dir: string): FastifyReply {
  const e = dashboardErrors.DASHBOARD_NOT_BUILT({ dir });
  return reply.status(e.status).header('content-type', 'text/html; charset=utf-8').header('cache-control', 'no-store').send(
    `<!doctype html><meta charset="utf-8"><title>Ferry dashboard: not built</title>`
    + `<body style="font-family:sans-serif;margin:3em"><h1>The dashboard is not built</h1>`
    + `<p>Run <code>./scripts/setup</code> in the Ferry repository, then reload this page.</p>`
    + `<p><small>${escapeHtml(e.code)}: ${escapeHtml(e.message)}</small></p></body>`);
}

/** Dashboard routes (register without a prefix); `dir` defaults to build/dashboard. */
export function dashboardRoutes(o: { dir?: string } = {}): FastifyPluginAsync {
  const dir = o.dir ?? process.env.FERRY_DASHBOARD_DIR ?? DASHBOARD_DIR;
  return async (app) => {
    const hide = { schema: { hide: true } };
    app.get('/', hide, async (_req, reply) => reply.redirect('/ui/'));
    app.get('/ui', hide, async (_req, reply) => reply.redirect('/ui/'));
    app.get('/ui/*', hide, async (req, reply) => {
      const rel = (req.params as { '*': string })['*'] || 'index.html';
      let file: string;
      try { file = normalize(join(dir, decodeURIComponent(rel))); } catch { file = dir; }
      // Nothing outside the build directory, whatever the path says.
      const inside = file.startsWith(dir + sep);
      const found = inside ? await stat(file).then((s) => s.isFile(), () => false) : false;
      // Unknown paths get the app itself (it has one page), unless they name a file type: those are real misses.
      const target = found ? file : extname(rel) === '' || rel === 'index.html' ? join(dir, 'index.html') : undefined;
      if (target === undefined) return reply.status(404).header('content-type', 'text/plain; charset=utf-8').send(`no such dashboard file: ${rel}\n`);
      const body = await readFile(target).catch(() => undefined);
      if (body === undefined) return notBuilt(reply, dir);
      // Vite names assets by content hash: they may be cached for good; the page itself must not be.
      const cache = target.includes(`${sep}assets${sep}`) ? 'public, max-age=31536000, immutable' : 'no-cache';
      return reply.header('content-type', TYPES[extname(target)] ?? 'application/octet-stream').header('cache-control', cache).send(body);
    });
  };
}
