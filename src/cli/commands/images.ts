/** Image verbs: image ls, inspect, rm, import. */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { basename, dirname, resolve } from 'node:path';
import type { Command } from 'commander';
import { formatBytes } from '../../model/text.ts';
import { FerryError } from '../../errors/index.ts';
import { table, printJson, age } from '../output.ts';
import type { Ctx } from './containers.ts';

/** Streams `path` as a tar archive: a file as it is, a directory tarred on the fly (numeric owners kept). */
async function* archiveOf(path: string, onBytes: (n: number) => void): AsyncGenerator<Uint8Array> {
  const s = await stat(path).catch(() => undefined);
  if (!s) throw new FerryError('FERRY_ERR_BAD_PATH', 400, `no such file or directory: ${path}`);
  if (s.isFile()) {
    for await (const c of createReadStream(path)) { onBytes((c as Buffer).length); yield c as Buffer; }
    return;
  }
  if (!s.isDirectory()) throw new FerryError('FERRY_ERR_BAD_PATH', 400, `${path} is neither a file nor a directory`);
  const tar = spawn('tar', ['--numeric-owner', '--xattrs', '-C', path, '-cf', '-', '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  tar.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  const done = new Promise<number>((r) => tar.on('close', (code) => r(code ?? 1)));
  for await (const c of tar.stdout) { onBytes((c as Buffer).length); yield c as Buffer; }
  if ((await done) !== 0) throw new FerryError('FERRY_ERR_BAD_PATH', 400, `cannot read ${path}: ${err.trim()}`);
}

/** Registers `ferry image …`. */
export function imageCommands(program: Command, ctx: Ctx): void {
  const image = program.command('image').description('manage images');

  image.command('ls').description('list images on the nodes').action(async () => {
    const imgs = await ctx.client().images.list();
    if (ctx.format() === 'json') return printJson(imgs);
    process.stdout.write(`${table(['NAME', 'ID', 'SIZE', 'CREATED', 'NODES'], imgs.map((i) => [
      i.tags.join(', ') || '<none>', i.id.slice(7, 19), formatBytes(i.size), age(i.created), i.nodes.join(', '),
    ]))}\n`);
  });

  image.command('inspect').description('show an image').argument('<ref>').action(async (ref: string) => {
    const i = await ctx.client().images.inspect(ref);
    if (ctx.format() === 'json') return printJson(i);
    const c = i.config;
    process.stdout.write([
      `ID:          ${i.id}`, `Tags:        ${i.tags.join(', ') || '-'}`, `Size:        ${formatBytes(i.size)}`,
      `Created:     ${i.created}`, `Platform:    ${i.os}/${i.architecture}`, `Layers:      ${i.layers.length}`,
      `Entrypoint:  ${JSON.stringify(c.entrypoint)}`, `Cmd:         ${JSON.stringify(c.cmd)}`, `WorkingDir:  ${c.workingDir || '/'}`,
      `User:        ${c.user || 'root'}`, `Env:         ${c.env.join(' ')}`, `Ports:       ${c.exposedPorts.join(', ') || '-'}`,
      `Nodes:       ${i.nodes.join(', ')}`,
    ].join('\n') + '\n');
  });

  image.command('rm').description('remove an image or one of its tags').argument('<refs...>')
    .option('-f, --force', 'remove even when containers use it')
    .action(async (refs: string[], o: { force?: boolean }) => {
      for (const r of refs) await ctx.client().images.remove(r, { force: o.force });
      if (ctx.format() === 'json') printJson({ removed: refs });
      else for (const r of refs) process.stdout.write(`${r}\n`);
    });

  image.command('import').description('import an OCI layout dir, an OCI/docker archive, or a rootfs tar/dir')
    .argument('<path>').option('--name <name[:tag]>', 'tag for the image (required for a rootfs)')
    .option('--node <node>', 'import only on this node (default: every ready node)')
    .action(async (path: string, o: { name?: string; node?: string }) => {
      const abs = resolve(path);
      if (!(await stat(abs).catch(() => undefined))) throw new FerryError('FERRY_ERR_BAD_PATH', 400, `no such file or directory: ${abs}`);
      let sent = 0;
      const tty = process.stderr.isTTY && ctx.format() !== 'json';
      const t0 = Date.now();
      const tick = setInterval(() => {
        if (tty) process.stderr.write(`\rimporting ${basename(abs) || dirname(abs)}: ${formatBytes(sent)} sent (${formatBytes(sent / Math.max(0.001, (Date.now() - t0) / 1000))}/s)   `);
      }, 200);
      try {
        const img = await ctx.client().images.import(archiveOf(abs, (n) => { sent += n; }), { name: o.name, node: o.node });
        if (tty) process.stderr.write(`\rimported ${formatBytes(sent)} in ${((Date.now() - t0) / 1000).toFixed(1)}s${' '.repeat(30)}\n`);
        if (ctx.format() === 'json') printJson(img);
        else process.stdout.write(`${img.tags.join(', ') || img.id} ${img.id.slice(7, 19)}\n`);
      } finally {
        clearInterval(tick);
      }
    });
}
