/** Migration verbs: migrate, migrations ls/inspect/cancel. */
import type { Command } from 'commander';
import type { Migration } from '../../model/index.ts';
import { formatBytes, formatDuration, parseBandwidth } from '../../model/text.ts';
import { FerryError } from '../../errors/index.ts';
import { TERMINAL, movesMemory } from '../../migration/index.ts';
import { table, printJson, age } from '../output.ts';
import type { Ctx } from './containers.ts';


/** The report `ferry migrate` ends with (and `migrations inspect` starts with). */
export function report(m: Migration): string {
  const s = m.status;
  const checkLine = (c: (typeof s.checks)[number]): string => `  ${c.ok ? 'ok  ' : 'FAIL'}       ${c.check}: ${c.reason}`;
  if (m.spec.checkOnly) {
    // Prechecks only: nothing moved, so no freeze, time or bytes; say what a real run would do.
    const failed = s.checks.filter((c) => !c.ok).length;
    const verdict = s.phase === 'Succeeded' ? 'every precheck passed' : failed > 0 ? `${failed} precheck(s) failed` : `${s.phase.toLowerCase()}`;
    const lines = [
      `Check ${m.metadata.name}: ${m.spec.container} ${m.spec.from} → ${m.spec.to}: ${verdict}; nothing moved (--check)`,
      `  strategy   ${s.strategy} (${s.strategyReason})`,
    ];
    if (s.error && failed === 0) lines.push(`  error      ${s.error}`);
    lines.push(...s.checks.map(checkLine));
    return lines.join('\n');
  }
  const lines = [
    `Migration ${m.metadata.name}: ${m.spec.container} ${m.spec.from} → ${m.spec.to}: ${s.phase}`,
    `  strategy   ${s.strategy} (${s.strategyReason})`,
    `  freeze     ${s.freezeMs !== undefined ? `${Math.round(s.freezeMs)} ms` : '-'}`,
    `  total      ${s.totalMs !== undefined ? formatDuration(s.totalMs) : '-'}`,
    `  bytes      ${formatBytes(s.bytes)}`,
    `  rounds     ${s.round}`,
  ];
  if (s.error) lines.push(`  error      ${s.error}${s.failedIn ? ` (in ${s.failedIn})` : ''}`);
  // Only the failed checks are worth a line here (a --check run lists them all, above).
  lines.push(...s.checks.filter((c) => !c.ok).map(checkLine));
  return lines.join('\n');
}

/**
 * The progress line while memory moves: phase, round, bytes the target holds, %, ETA (redrawn on a
 * terminal, else every 2 s). Pre-copy's first round copies the whole memory while the container
 * runs, so it gets a bar too; later rounds move only what changed (their history line says how much).
 */
export function progressLine(m: Migration, rate: number | undefined): string | undefined {
  const p = m.status.progress;
  if (!p || p.bytes === 0 || !movesMemory(m.status)) return undefined;
  const total = p.totalBytes && p.totalBytes > p.bytes ? p.totalBytes : undefined;
  const pct = total ? Math.min(99, Math.floor((100 * p.bytes) / total)) : undefined;
  const width = 24;
  const filled = pct === undefined ? 0 : Math.round((width * pct) / 100);
  const eta = total && rate && rate > 0 ? ` ETA ${formatDuration(Math.max(0, (1000 * (total - p.bytes)) / rate))}` : '';
  const round = m.status.phase === 'Copy' ? ` round ${m.status.round + 1}` : m.status.round > 0 ? ` after round ${m.status.round}` : '';
  return `  ${m.status.phase}${round} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${formatBytes(p.bytes)}${total ? ` / ~${formatBytes(total)} ${pct}%` : ''}${eta}`;
}

function progressBar(enabled: boolean): { show(m: Migration): void; clear(): void } {
  const tty = process.stderr.isTTY === true;
  let shown = false;
  let lastPrint = 0;
  let first: { bytes: number; at: number } | undefined;
  return {
    show(m) {
      if (!enabled) return;
      const p = m.status.progress;
      if (p && p.bytes > 0 && !first) first = { bytes: p.bytes, at: Date.parse(p.updatedAt) };
      const rate = p && first && Date.parse(p.updatedAt) > first.at ? (1000 * (p.bytes - first.bytes)) / (Date.parse(p.updatedAt) - first.at) : undefined;
      const line = progressLine(m, rate);
      if (!line) return;
      if (tty) {
        process.stderr.write(`\r\x1b[K${line}`);
        shown = true;
      } else if (Date.now() - lastPrint >= 2000) {
        process.stderr.write(`${line}\n`);
        lastPrint = Date.now();
      }
    },
    clear() {
      if (shown) process.stderr.write('\r\x1b[K');
      shown = false;
    },
  };
}

/** Registers `ferry migrate` and `ferry migrations …`. */
export function migrationCommands(program: Command, ctx: Ctx): void {
  program.command('migrate').description('live-migrate a running container to another node').argument('<name>')
    .option('--to <node>', 'target node (default: the scheduler picks one)')
    .option('--strategy <s>', 'stop-copy | pre-copy | post-copy | auto', 'auto')
    .option('--bandwidth <rate>', 'most the transfer may use, e.g. 50M (bytes per second)')
    .option('--check', 'only run the prechecks')
    .action(async (name: string, o: { to?: string; strategy: string; check?: boolean; bandwidth?: string }) => {
      if (!['auto', 'stop-copy', 'pre-copy', 'post-copy'].includes(o.strategy)) {
        throw new FerryError('FERRY_ERR_BAD_FLAG', 400, `--strategy must be stop-copy, pre-copy, post-copy or auto, not "${o.strategy}"`);
      }
      const bandwidthBytesPerSec = o.bandwidth === undefined ? undefined : parseBandwidth(o.bandwidth);
      const client = ctx.client();
      let m = await client.migrations.create({
        container: name, ...(o.to ? { to: o.to } : {}), strategy: o.strategy as 'auto', check: o.check, ...(bandwidthBytesPerSec ? { bandwidthBytesPerSec } : {}),
      });
      const seen = new Set<string>();
      // Phase times count from the migration's first phase, on the manager's clock (as its history is).
      const t0 = m.status.history[0] ? Date.parse(m.status.history[0].at) : Date.now();
      const bar = progressBar(ctx.format() !== 'json');
      for (;;) {
        for (const h of m.status.history) {
          const k = `${h.phase}@${h.at}`;
          if (seen.has(k)) continue;
          seen.add(k);
          bar.clear();
          if (ctx.format() !== 'json') process.stderr.write(`  ${((Date.parse(h.at) - t0) / 1000).toFixed(2).padStart(6)}s  ${h.phase}${h.message ? `: ${h.message}` : ''}\n`);
        }
        if (TERMINAL.has(m.status.phase)) break;
        bar.show(m);
        await new Promise((r) => setTimeout(r, 100));
        m = await client.migrations.get(m.metadata.name);
      }
      bar.clear();
      if (ctx.format() === 'json') printJson(m);
      else process.stdout.write(`${report(m)}\n`);
      if (m.status.phase !== 'Succeeded') ctx.setExit(1);
    });

  const mig = program.command('migrations').description('list, inspect and cancel migrations');
  mig.command('ls').description('list migrations').action(async () => {
    const all = await ctx.client().migrations.list();
    if (ctx.format() === 'json') return printJson(all);
    process.stdout.write(`${table(['ID', 'CONTAINER', 'FROM', 'TO', 'PHASE', 'STRATEGY', 'FREEZE', 'TOTAL', 'STARTED'], all.map((m) => [
      m.metadata.name, m.spec.container, m.spec.from, m.spec.to, m.spec.checkOnly ? `${m.status.phase} (check)` : m.status.phase, m.status.strategy,
      m.status.freezeMs !== undefined ? `${Math.round(m.status.freezeMs)}ms` : '-', m.status.totalMs !== undefined ? formatDuration(m.status.totalMs) : '-',
      age(m.metadata.createdAt),
    ]))}\n`);
  });
  mig.command('inspect').description('show a migration with its phases').argument('<id>').action(async (id: string) => {
    const m = await ctx.client().migrations.get(id);
    if (ctx.format() === 'json') return printJson(m);
    process.stdout.write(`${report(m)}\n  phases     ${m.status.history.map((h) => `${h.phase} ${h.at.slice(11, 23)}`).join(' → ')}\n`);
  });
  mig.command('cancel').description('cancel a migration (rolls back to the source)').argument('<id>').action(async (id: string) => {
    const m = await ctx.client().migrations.cancel(id);
    if (ctx.format() === 'json') return printJson(m);
    process.stdout.write(`${id}: cancel requested (${m.status.phase})\n`);
  });
}
