/** How the CLI prints: readable tables for people, JSON for scripts (`-o json`), errors with codes. */
import { FerryError } from '../errors/index.ts';

/** Output format chosen with `-o`. */
export type OutputFormat = 'table' | 'json';

/** Prints rows as an aligned table with a header. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('   ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** Prints JSON (pretty) to stdout. */
export function printJson(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
}

/** Exit codes: 0 ok, 1 the operation failed, 2 bad usage or input, 3 Ferry is not reachable, 4 not found, 5 conflict. */
export const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3, notFound: 4, conflict: 5 } as const;

/** Maps an error to the exit code scripts can branch on. */
export function exitCodeFor(e: unknown): number {
  if (!(e instanceof FerryError)) return EXIT.failed;
  if (e.code === 'FERRY_ERR_UNREACHABLE') return EXIT.unreachable;
  if (e.status === 404) return EXIT.notFound;
  if (e.status === 409) return EXIT.conflict;
  if (e.status === 400 || e.status === 413) return EXIT.usage;
  return EXIT.failed;
}

/** Prints an error (JSON on stderr with `-o json`) and returns the exit code. */
export function reportError(e: unknown, format: OutputFormat): number {
  const fe = e instanceof FerryError ? e : new FerryError('FERRY_ERR_INTERNAL', 500, (e as Error)?.message ?? String(e));
  if (format === 'json') process.stderr.write(`${JSON.stringify({ error: fe.toJSON() })}\n`);
  else process.stderr.write(`Error: ${fe.message}${fe.code && fe.code !== 'FERRY_ERR_INTERNAL' ? ` (${fe.code})` : ''}\n`);
  return exitCodeFor(fe);
}

/** "3 minutes ago" style age of an ISO time. */
export function age(iso: string | undefined, now = Date.now()): string {
  if (!iso) return '-';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}
