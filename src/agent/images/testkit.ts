/**
 * Test helpers for the image store (used only by the *.test.ts files here): temp dirs that are
 * unmounted and removed after each test, hand-made layer tars and OCI layouts, and the sample-app
 * binary compiled from source.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { TestContext } from 'node:test';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { mountsUnder, unmountAll } from './mounts.ts';
import { LocalImageStore, type LocalImageStoreOptions } from './store.ts';

/** Runs a command; resolves stdout. */
export const run = async (cmd: string, args: string[]): Promise<string> => (await promisify(execFile)(cmd, args, { maxBuffer: 64 << 20 })).stdout;

/** The repository root. */
export const REPO = resolve(import.meta.dirname, '../../..');

/** A unique prefix for this test run's names. */
export const RUN_ID = `ferry-img-${process.pid}-${randomBytes(3).toString('hex')}`;

/** Skips (or, under CI=true, fails) a test whose prerequisite is missing; returns whether to go on. */
export function prerequisite(t: TestContext, ok: boolean, what: string): boolean {
  if (ok) return true;
  if (process.env.CI === 'true') assert.fail(`prerequisite missing: ${what}`);
  t.skip(`prerequisite missing: ${what}`);
  return false;
}

/** True when `cmd` runs. */
export async function have(cmd: string, args = ['--version']): Promise<boolean> {
  return run(cmd, args).then(
    () => true,
    () => false,
  );
}

/** A temp dir under /tmp that is unmounted and deleted after the test, pass or fail. */
export async function tempDir(t: TestContext, label: string): Promise<string> {
  const dir = await mkdtemp(join('/tmp', `${RUN_ID}-${label}-`));
  t.after(async () => {
    await unmountAll(dir).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });
  return dir;
}

/** True when something is mounted at or under `path`. */
export async function anyMountUnder(path: string): Promise<boolean> {
  return (await mountsUnder(path)).length > 0;
}

/** The id shift tests use (the agent's default). */
export const SHIFT = { hostId: 100000, size: 65536 };

let sampleApp: Promise<string> | undefined;

/** Compiles native/sample/sample-app.c once per process into a temp dir (removed at exit). */
export function sampleAppBinary(): Promise<string> {
  sampleApp ??= (async () => {
    const dir = await mkdtemp(join('/tmp', `${RUN_ID}-bin-`));
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    const out = join(dir, 'sample-app');
    await run('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-static', '-o', out, join(REPO, 'native/sample/sample-app.c')]);
    return out;
  })();
  return sampleApp;
}

/** A store in a fresh temp root. */
export async function newStore(t: TestContext, extra: Partial<LocalImageStoreOptions> = {}, logs: string[] = []): Promise<{ store: LocalImageStore; root: string }> {
  const root = await tempDir(t, 'store');
  const store = new LocalImageStore({ root, idShift: SHIFT, sampleAppPath: join(REPO, 'build/sample-app'), log: (m) => logs.push(m), ...extra });
  return { store, root };
}

/** One entry of a hand-made layer. */
export interface FixtureEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo';
  content?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  linkname?: string;
  mtime?: Date;
}

/** Builds a tar from entries (in the given order). */
export async function makeTar(entries: FixtureEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack as unknown as AsyncIterable<Buffer>) chunks.push(c);
  })();
  for (const e of entries) {
    const type = e.type ?? 'file';
    const body = Buffer.from(e.content ?? '');
    await new Promise<void>((ok, fail) =>
      pack.entry(
        {
          name: e.name,
          type,
          mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644),
          uid: e.uid ?? 0,
          gid: e.gid ?? 0,
          mtime: e.mtime ?? new Date('2023-06-01T00:00:00Z'),
          linkname: e.linkname,
          size: type === 'file' ? body.length : 0,
          devmajor: 1,
          devminor: 3,
        },
        type === 'file' ? body : Buffer.alloc(0),
        (err) => (err ? fail(err) : ok()),
      ),
    );
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** Writes an OCI image layout with one image per `images` item; layers are gzipped when `gzip`. */
export async function makeOciLayout(dir: string, images: { ref?: string; layers: Buffer[]; gzip?: boolean; cmd?: string[] }[]): Promise<string[]> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  const put = async (b: Buffer | string) => {
    await writeFile(join(dir, 'blobs', 'sha256', sha(b)), b);
    return { digest: `sha256:${sha(b)}`, size: Buffer.byteLength(b) };
  };
  const manifests = [];
  const ids: string[] = [];
  for (const img of images) {
    const layers = [];
    for (const l of img.layers) {
      const blob = img.gzip ? gzipSync(l) : l;
      layers.push({ mediaType: `application/vnd.oci.image.layer.v1.tar${img.gzip ? '+gzip' : ''}`, ...(await put(blob)) });
    }
    const config = JSON.stringify({
      created: '2023-06-01T00:00:00Z',
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: img.cmd ?? ['/bin/sh'], Env: ['PATH=/bin'] },
      rootfs: { type: 'layers', diff_ids: img.layers.map((l) => `sha256:${sha(l)}`) },
    });
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...(await put(config)) },
      layers,
    });
    const m = await put(manifest);
    ids.push(m.digest);
    manifests.push({ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...m, ...(img.ref ? { annotations: { 'org.opencontainers.image.ref.name': img.ref } } : {}) });
  }
  await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests }));
  await writeFile(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  return ids;
}

/** Reads a file as text. */
export const text = (p: string) => readFile(p, 'utf8');
