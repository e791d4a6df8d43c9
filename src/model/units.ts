/** Parsing and printing of the quantities users type: memory sizes, CPU shares, durations. */
import { modelErrors } from './errors.ts';

const MEMORY_UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1024, kb: 1024, ki: 1024, kib: 1024,
  m: 1024 ** 2, mb: 1024 ** 2, mi: 1024 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1024 ** 3, gi: 1024 ** 3, gib: 1024 ** 3,
  t: 1024 ** 4, tb: 1024 ** 4, ti: 1024 ** 4, tib: 1024 ** 4,
};

/** Smallest memory limit runc/the kernel accept sensibly for a container. */
export const MIN_MEMORY_BYTES = 6 * 1024 * 1024;

/** Parses `128m`, `1.5G`, `512MiB`, `1048576` into bytes (binary units, as Docker does). */
export function parseMemory(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? MEMORY_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw modelErrors.BAD_MEMORY({ value: text, hint: 'use a number with an optional unit: 128m, 1g, 512MiB' });
  }
  const bytes = Math.floor(Number(m[1]) * unit);
  if (bytes < MIN_MEMORY_BYTES) {
    throw modelErrors.BAD_MEMORY({ value: text, hint: `the minimum is ${formatBytes(MIN_MEMORY_BYTES)}` });
  }
  return bytes;
}

/** Parses a bandwidth such as `50M`, `50MiB/s`, `500k`, `1g` into bytes per second (binary units). */
export function parseBandwidth(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*?)(?:\/s)?\s*$/.exec(text);
  const unit = m ? MEMORY_UNITS[m[2]!.toLowerCase()] : undefined;
  const bytes = m && unit !== undefined ? Math.floor(Number(m[1]) * unit) : 0;
  if (bytes < 1) throw modelErrors.BAD_BANDWIDTH({ value: text });
  return bytes;
}

/** Parses a CPU share in cores: `0.5`, `2`, or millicores `500m`. */
export function parseCpus(text: string): number {
  const t = text.trim();
  let cpus: number;
  if (/^\d+m$/.test(t)) cpus = Number(t.slice(0, -1)) / 1000;
  else if (/^\d+(\.\d+)?$/.test(t)) cpus = Number(t);
  else throw modelErrors.BAD_CPUS({ value: text, hint: 'use cores like 0.5 or 2, or millicores like 500m' });
  if (!(cpus >= 0.01) || cpus > 1024) throw modelErrors.BAD_CPUS({ value: text, hint: 'between 0.01 and 1024 cores' });
  return Math.round(cpus * 1000) / 1000;
}

/** Prints bytes as `128MiB`, `1.5GiB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  const s = v >= 100 || Number.isInteger(v) ? v.toFixed(0) : v.toFixed(1);
  return `${s}${units[i]}`;
}

/** Parses a duration like `10s`, `500ms`, `2m` into milliseconds. */
export function parseDuration(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text);
  if (!m) throw modelErrors.BAD_DURATION({ value: text, hint: 'use 500ms, 10s, 2m or 1h' });
  const mult = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(m[1]) * mult);
}

/** Prints milliseconds as `1.2s`, `350ms`, `3m10s`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const m = Math.floor(ms / 60_000);
  if (m < 60) return `${m}m${Math.floor((ms % 60_000) / 1000)}s`;
  return `${Math.floor(m / 60)}h${m % 60}m`;
}

/** The longest a join token may live: a year. */
export const JOIN_TOKEN_MAX_TTL_SECONDS = 365 * 86_400;

const TTL_UNITS = { s: 1, m: 60, h: 3600, d: 86_400 } as const;

/** Parses a join token's lifetime (`30m`, `2h`, `1d`, `90s`; a bare number is seconds) into seconds. */
export function parseTtl(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([smhd])?\s*$/.exec(text);
  const seconds = m ? Math.round(Number(m[1]) * TTL_UNITS[(m[2] ?? 's') as keyof typeof TTL_UNITS]) : 0;
  if (seconds < 1 || seconds > JOIN_TOKEN_MAX_TTL_SECONDS) {
    throw modelErrors.BAD_DURATION({ value: text, hint: 'use a lifetime like 30m, 2h or 1d (at least 1s, at most 365d)' });
  }
  return seconds;
}
