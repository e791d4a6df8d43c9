/**
 * Images through the CLI (rootfs directory, docker-archive and OCI layout written by skopeo, a
 * malicious tar) and bad input of every kind: each gets a clear message and exit code, and nothing
 * half-made remains.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, rm, symlink, copyFile, writeFile, access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFerry, teardownFerry, type TestFerry } from './support/ferry.ts';
import { ensurePrerequisites, skipUnlessReady } from './support/prereq.ts';
import { freePort } from './support/net.ts';
import type { ContainerView, ImageView } from '../src/model/index.ts';

const TOOLS = ['runc', 'ip', 'iptables', 'skopeo', 'busybox', 'tar'];

describe('images and bad input through the CLI', { skip: skipUnlessReady(TOOLS) }, () => {
  let f: TestFerry;
  let work: string;
  before(async () => {
    ensurePrerequisites(TOOLS);
    f = await startFerry();
    work = await mkdtemp(join(tmpdir(), `ferry-img-${f.id}-`));
  });
  after(async () => {
    if (work) await rm(work, { recursive: true, force: true });
    if (!f) return;
    const left = await teardownFerry(f);
    assert.deepEqual(left, [], `teardown found leftovers: ${left.join('; ')}`);
  });

  const imageTags = async (): Promise<string[]> => (await f.json<ImageView[]>(['image', 'ls'])).flatMap((i) => i.tags).sort();

  it('imports a rootfs directory and runs it', async () => {
    const root = join(work, 'rootfs');
    await mkdir(join(root, 'bin'), { recursive: true });
    await copyFile('/bin/busybox', join(root, 'bin/busybox'));
    for (const a of ['sh', 'echo', 'sleep', 'cat']) await symlink('busybox', join(root, 'bin', a));
    await mkdir(join(root, 'etc'));
    await writeFile(join(root, 'etc/greeting'), 'hello from a rootfs\n');
    const out = await f.ok(['image', 'import', root, '--name', 'mybox:1']);
    assert.match(out, /mybox:1/);
    assert.ok((await imageTags()).includes('mybox:1'));
    await f.ok(['run', '--name', 'box', 'mybox:1', '--', '/bin/sh', '-c', 'cat /etc/greeting; sleep 300']);
    assert.equal((await f.ok(['exec', 'box', '--', 'cat', '/etc/greeting'])).trim(), 'hello from a rootfs');
    const inspect = await f.json<ImageView>(['image', 'inspect', 'mybox:1']);
    assert.deepEqual(inspect.nodes, [f.node]);
    const rmInUse = await f.cli(['image', 'rm', 'mybox:1']);
    assert.equal(rmInUse.code, 2);
    assert.match(rmInUse.stderr, /used by container\(s\) box/);
    await f.ok(['rm', '-f', 'box']);
    await f.ok(['image', 'rm', 'mybox:1']);
    assert.ok(!(await imageTags()).includes('mybox:1'));
  });

  it('imports a docker-archive and an OCI layout written by skopeo', async () => {
    const store = join(f.home, 'agents', f.node, 'images');
    const archive = join(work, 'sample-docker.tar');
    execFileSync('skopeo', ['copy', '--quiet', `oci:${store}:sample:latest`, `docker-archive:${archive}:copied/sample:v2`]);
    const a = await f.json<ImageView>(['image', 'import', archive]);
    assert.ok(a.tags.includes('copied/sample:v2'), `tags ${a.tags.join(',')}`);
    const layout = join(work, 'layout');
    execFileSync('skopeo', ['copy', '--quiet', `oci:${store}:sample:latest`, `oci:${layout}:v3`]);
    const b = await f.json<ImageView>(['image', 'import', layout, '--name', 'layout-sample:v3']);
    assert.ok(b.tags.includes('layout-sample:v3'));
    // Same layers as the built-in sample: they run the same app.
    await f.ok(['run', '--name', 'copy', 'layout-sample:v3']);
    assert.equal((await f.ok(['exec', 'copy', '--', 'ls', '/app'])).trim(), 'sample-app');
    await f.ok(['rm', '-f', 'copy']);
    await f.ok(['image', 'rm', 'copied/sample:v2', 'layout-sample:v3']);
  });

  it('refuses a tar whose paths escape, and writes nothing outside', async () => {
    const src = join(work, 'evil-src');
    await mkdir(join(src, 'inner'), { recursive: true });
    await writeFile(join(src, 'inner', 'x'), 'x');
    const victim = join(work, 'escaped');
    const tar = join(work, 'evil.tar');
    // A path with ../ that would land in work/escaped when unpacked under the store.
    execFileSync('tar', ['-C', src, '-cf', tar, '--transform', `s,inner/x,../../../../../../../../../..${victim},`, 'inner/x']);
    const before = await imageTags();
    const r = await f.cli(['image', 'import', tar, '--name', 'evil:1']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /escape|\.\./i);
    assert.deepEqual(await imageTags(), before, 'no image was added');
    await assert.rejects(access(victim), 'nothing was written outside the store');
  });

  it('bad input: a clear message, a non-zero exit code, and nothing changed', async () => {
    const port = await freePort();
    await f.ok(['run', '--name', 'web', '-p', `127.0.0.1:${port}:80`, 'sample']);
    const cases: [string[], number, RegExp][] = [
      [['run', 'nosuch'], 4, /no image "nosuch" on any node/],
      [['run', '--memory', '12x', 'sample'], 2, /invalid memory size "12x"/],
      [['run', '--memory', '1k', 'sample'], 2, /the minimum is 6MiB/],
      [['run', '--cpus', 'lots', 'sample'], 2, /invalid CPU value "lots"/],
      [['run', '--cpus', '0', 'sample'], 2, /between 0.01 and 1024/],
      [['run', '--name', 'web', 'sample'], 5, /a container named "web" already exists/],
      [['run', '--name', 'bad name', 'sample'], 2, /invalid name "bad name"/],
      [['run', '-p', `127.0.0.1:${port}:80`, 'sample'], 5, new RegExp(`port 127\\.0\\.0\\.1:${port} is already published by container "web"`)],
      [['run', '-p', '99999:80', 'sample'], 2, /outside 1-65535/],
      [['run', '--restart', 'sometimes', 'sample'], 2, /invalid restart policy "sometimes"/],
      [['run', '-v', 'relative/dir:/x', 'sample'], 2, /a volume name is letters.*a host path must be absolute/],
      [['run', '--shared-volume', '/srv/data:/x', 'sample'], 2, /a shared volume is named, not a host path/],
      [['run', '-e', 'NOEQUALS', 'sample'], 2, /use KEY=VALUE/],
      [['inspect', 'ghost'], 4, /no container named "ghost"/],
      [['logs', 'ghost'], 4, /no container named "ghost"/],
      [['exec', 'ghost', '--', 'true'], 4, /no container named "ghost"/],
      [['stop', 'ghost'], 4, /no container named "ghost"/],
      [['rm', 'ghost'], 4, /no container named "ghost"/],
      [['update', 'web', '--memory', 'huge'], 2, /invalid memory size "huge"/],
      [['image', 'inspect', 'nosuch'], 4, /no image "nosuch"/],
      [['image', 'import', join(work, 'missing.tar')], 2, /no such file or directory/],
      [['-o', 'yaml', 'ps'], 2, /--output must be table or json/],
      [['frobnicate'], 2, /unknown command/],
    ];
    const rev = async (): Promise<string> => JSON.stringify((await f.client.containers.list()).map((v) => [v.container.metadata.name, v.container.metadata.generation]));
    const before = await rev();
    // Every case is refused, so they may run side by side: four CLI processes at a time.
    const check = async ([args, code, message]: (typeof cases)[number]): Promise<void> => {
      const r = await f.cli(args);
      assert.equal(r.code, code, `ferry ${args.join(' ')} → ${r.code}: ${r.stderr}`);
      assert.match(r.stderr, message, `ferry ${args.join(' ')}`);
      const j = await f.cli(['-o', 'json', ...args]);
      if (code !== 2 || /^(run|inspect|logs|exec|stop|rm|update|image)$/.test(args[0]!)) {
        assert.equal(j.code, code, `ferry -o json ${args.join(' ')} → ${j.code}: ${j.stderr}`);
      }
    };
    for (let i = 0; i < cases.length; i += 4) await Promise.all(cases.slice(i, i + 4).map(check));
    assert.equal(await rev(), before, 'no container was created or changed');
    const jsonErr = await f.cli(['-o', 'json', 'inspect', 'ghost']);
    assert.equal(JSON.parse(jsonErr.stderr).error.code, 'FERRY_ERR_CONTAINER_NOT_FOUND');
    const list = await f.json<ContainerView[]>(['ps', '-a']);
    assert.deepEqual(list.map((v) => v.container.metadata.name), ['web']);
    await f.ok(['rm', 'web']);
  });

  it('a second `ferry up` on a running home is refused', async () => {
    const r = await f.cli(['up', '--port', '0']);
    assert.equal(r.code, 5);
    assert.match(r.stderr, /Ferry is already running in .*; run `ferry down` first/);
  });
});
