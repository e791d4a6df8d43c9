/** Numbers as people read them. */

/** 1536 → "1.5 KiB". */
export function bytes(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '-';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)} ${u[i]}`;
}

/** 1234 → "1.23 s", 87 → "87 ms". */
export function ms(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '-';
  return n >= 1000 ? `${(n / 1000).toFixed(2)} s` : `${Math.round(n)} ms`;
}
