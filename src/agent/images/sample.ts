/**
 * The built-in `sample` image, made locally without network: busybox-static (with its applet
 * symlinks) plus the sample-app binary (native/sample/sample-app.c). Every mtime and owner is fixed,
 * so the same two binaries always give the same layer, config and manifest digests.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import type tar from 'tar-stream';
import { imageErrors } from './errors.ts';
import { addEntry } from './pack.ts';
import type { OciRunSection } from './oci.ts';

/** The sample image's tag. */
export const SAMPLE_TAG = 'sample:latest';
/** Label holding the digest of the inputs the sample image was built from. */
export const SAMPLE_INPUTS_LABEL = 'io.ferry.sample.inputs';
/** Bumped whenever the sample image's layout changes, so old builds are replaced. */
const SAMPLE_RECIPE = 'ferry-sample-v1';
/** The fixed timestamp of every file and of the config. */
export const SAMPLE_CREATED = '2024-01-01T00:00:00Z';

/** The two binaries the sample image is made of, read into memory (about 2 MB). */
export interface SampleInputs {
  readonly busybox: Buffer;
  readonly app: Buffer;
  readonly applets: string[];
  /** Digest of recipe + binaries; equal inputs give an equal image. */
  readonly digest: string;
}

/** Reads the binaries and busybox's applet list. */
export async function readSampleInputs(busyboxPath: string, appPath: string): Promise<SampleInputs> {
  const read = (p: string, what: string) =>
    readFile(p).catch((e: NodeJS.ErrnoException) => {
      throw imageErrors.IMAGE_SAMPLE_UNAVAILABLE({ reason: `${what} ${p}: ${e.code ?? e.message}${what === 'sample-app' ? ' (run scripts/setup to build it)' : ''}` }, e);
    });
  const [busybox, app] = await Promise.all([read(busyboxPath, 'busybox'), read(appPath, 'sample-app')]);
  let out: string;
  try {
    out = (await promisify(execFile)(busyboxPath, ['--list-full'], { maxBuffer: 1 << 20 })).stdout;
  } catch (e) {
    throw imageErrors.IMAGE_SAMPLE_UNAVAILABLE({ reason: `${busyboxPath} --list-full failed: ${(e as Error).message}` }, e);
  }
  const applets = [...new Set(out.split('\n').map((l) => l.trim().replace(/^\/+/, '')))]
    .filter((l) => /^(?:bin|sbin|usr\/bin|usr\/sbin)\/[\w.[\]-]+$/.test(l) && l !== 'bin/busybox')
    .sort();
  const h = createHash('sha256').update(SAMPLE_RECIPE);
  for (const b of [busybox, app]) h.update(createHash('sha256').update(b).digest());
  return { busybox, app, applets, digest: `sha256:${h.digest('hex')}` };
}

/** Writes the sample root filesystem into a tar. */
export async function fillSampleLayer(pack: tar.Pack, inputs: SampleInputs): Promise<void> {
  const mtime = new Date(SAMPLE_CREATED);
  const base = { uid: 0, gid: 0, uname: 'root', gname: 'root', mtime };
  const dir = (name: string, mode = 0o755) => addEntry(pack, { ...base, name: `${name}/`, type: 'directory', mode });
  const file = (name: string, content: Buffer | string, mode = 0o644) => {
    const buf = Buffer.from(content);
    return addEntry(pack, { ...base, name, type: 'file', mode, size: buf.length }, buf);
  };
  for (const d of ['app', 'bin', 'dev', 'etc', 'proc', 'sbin', 'sys', 'usr', 'usr/bin', 'usr/sbin', 'var']) await dir(d);
  await dir('root', 0o700);
  await dir('tmp', 0o1777);
  await file('app/sample-app', inputs.app, 0o755);
  await file('bin/busybox', inputs.busybox, 0o755);
  for (const a of inputs.applets) await addEntry(pack, { ...base, name: a, type: 'symlink', mode: 0o777, linkname: '/bin/busybox' });
  await file('etc/group', 'root:x:0:\nnobody:x:65534:\n');
  await file('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
}

/** The sample image's run settings. */
export function sampleRunConfig(inputs: SampleInputs): OciRunSection {
  return {
    Entrypoint: ['/app/sample-app'],
    Cmd: [],
    Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'],
    ExposedPorts: { '80/tcp': {} },
    WorkingDir: '/',
    Labels: { [SAMPLE_INPUTS_LABEL]: inputs.digest },
  };
}
