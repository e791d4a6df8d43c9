import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import type { TestContext } from 'node:test';
import { fetchFiles, listFiles, sendFiles, type ResumePoint } from './transfer.ts';

/** A source directory with nested files, one empty, one large. */
function source(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-xfer-src-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'image'));
  writeFileSync(join(dir, 'image', 'pages-1.img'), randomBytes(3 * 1024 * 1024 + 17));
  writeFileSync(join(dir, 'image', 'core-1.img'), randomBytes(900), { mode: 0o600 });
  writeFileSync(join(dir, 'image', 'empty.img'), '');
  writeFileSync(join(dir, 'upper.tar'), randomBytes(10_000));
  return dir;
}

function target(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-xfer-dst-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Serves sendFiles(dir) like the agent does; `mangle` may alter the n-th response. */
async function serve(t: TestContext, dir: string, mangle?: (n: number) => Transform | 'cut' | undefined): Promise<{ url: string; requests: ResumePoint[] }> {
  const requests: ResumePoint[] = [];
  const server: Server = createServer((req, res) => {
    if (req.headers.authorization !== 'Bearer s3cret') { res.writeHead(401).end('no'); return; }
    let body = '';
    req.on('data', (c: Buffer) => { body += c.toString(); });
    req.on('end', () => {
      const { resume } = JSON.parse(body) as { resume: ResumePoint };
      requests.push(resume);
      const m = mangle?.(requests.length);
      const s = sendFiles(dir, { resume });
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      if (m === 'cut') {
        // Break the connection after ~1 MiB, as a network failure would.
        let n = 0;
        s.on('data', (c: Buffer) => {
          n += c.length;
          res.write(c);
          // Let what was written reach the receiver, then drop the connection.
          if (n > 1 << 20) { s.destroy(); setTimeout(() => res.destroy(), 100); }
        });
        return;
      }
      (m ? s.pipe(m) : s).pipe(res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}/`, requests };
}

function same(a: string, b: string): void {
  const fa = listFilesSync(a);
  assert.deepEqual(listFilesSync(b), fa);
  for (const f of fa) assert.ok(readFileSync(join(a, f.path)).equals(readFileSync(join(b, f.path))), `${f.path} is identical`);
}

/** The files under `dir` with size and mode, like listFiles but synchronous. */
function listFilesSync(dir: string): { path: string; size: number; mode: number }[] {
  const walk = (d: string, pre: string): { path: string; size: number; mode: number }[] => {
    const out: { path: string; size: number; mode: number }[] = [];
    for (const n of readdirSync(d)) {
      const st = statSync(join(d, n));
      if (st.isDirectory()) out.push(...walk(join(d, n), `${pre}${n}/`));
      else out.push({ path: `${pre}${n}`, size: st.size, mode: st.mode & 0o7777 });
    }
    return out;
  };
  return walk(dir, '').sort((x, y) => x.path.localeCompare(y.path));
}

test('every file arrives whole, with its mode, in one stream', async (t) => {
  const src = source(t);
  const dst = target(t);
  const { url, requests } = await serve(t, src);
  const r = await fetchFiles(url, 's3cret', dst);
  same(src, dst);
  assert.equal(r.resumes, 0);
  assert.equal(requests.length, 1);
  assert.equal(r.bytes, (await listFiles(src)).reduce((s, f) => s + f.size, 0));
});

test('a broken stream resumes where it stopped: finished files are not sent again', async (t) => {
  const src = source(t);
  const dst = target(t);
  const { url, requests } = await serve(t, src, (n) => (n === 1 ? 'cut' : undefined));
  const r = await fetchFiles(url, 's3cret', dst);
  same(src, dst);
  assert.equal(r.resumes, 1);
  assert.equal(requests.length, 2);
  // The cut came inside pages-1.img (after the small core-1.img and empty.img): resumed mid-file.
  assert.deepEqual(requests[1]!.done, ['image/core-1.img', 'image/empty.img']);
  assert.equal(requests[1]!.partial?.path, 'image/pages-1.img');
  assert.ok((requests[1]!.partial?.offset ?? 0) > 0);
});

test('a file that arrives different from what was sent is refused', async (t) => {
  const src = source(t);
  const dst = target(t);
  // Flip one byte far into the stream (inside pages-1.img's content).
  let seen = 0;
  const flip = (): Transform => new Transform({
    transform(c: Buffer, _e, cb) {
      const at = 2_000_000 - seen;
      seen += c.length;
      if (at >= 0 && at < c.length) { const d = Buffer.from(c); d[at] = d[at]! ^ 0xff; cb(null, d); } else cb(null, c);
    },
  });
  const { url } = await serve(t, src, () => flip());
  await assert.rejects(fetchFiles(url, 's3cret', dst), /image\/pages-1.img arrived damaged/);
});

test('a wrong token is refused', async (t) => {
  const { url } = await serve(t, source(t));
  await assert.rejects(fetchFiles(url, 'wrong', target(t)), /HTTP 401/);
});
