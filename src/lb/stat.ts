/**
 * Parsers of HAProxy's runtime answers (`show stat`, `show info`, master `show proc`, `get var`)
 * and the projection of pooled backends and slots back onto services and replicas. Pure.
 */
import type { LbState } from './types.ts';

/** One row of `show stat`, with the columns Ferry reads. */
export interface StatRow {
  proxy: string;
  /** `FRONTEND`, `BACKEND` or the server's slot name (`s3`). */
  name: string;
  type: 'frontend' | 'backend' | 'server' | 'listener';
  /** UP, DOWN, MAINT, DRAIN, NOLB, "no check", OPEN… (HAProxy's words, without the "1/3" of a check in transition). */
  status: string;
  sessions: number;
  sessionsTotal: number;
  /** HTTP requests (HTTP backends and servers); 0 where HAProxy does not count them. */
  requestsTotal: number;
  queued: number;
  weight: number;
  checkStatus: string;
  /** Raw columns by header name, for anything else. */
  raw: Record<string, string>;
}

const TYPES = ['frontend', 'backend', 'server', 'listener'] as const;

/** Parses the CSV of `show stat` (header line `# pxname,svname,…`). */
export function parseShowStat(text: string): StatRow[] {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const head = lines.find((l) => l.startsWith('# '));
  if (!head) return [];
  const cols = head.slice(2).split(',');
  const out: StatRow[] = [];
  for (const line of lines) {
    if (line.startsWith('#')) continue;
    const cells = line.split(',');
    const raw: Record<string, string> = {};
    cols.forEach((c, i) => { if (c) raw[c] = cells[i] ?? ''; });
    const num = (c: string): number => {
      const v = Number(raw[c] ?? '');
      return Number.isFinite(v) ? v : 0;
    };
    out.push({
      proxy: raw.pxname ?? '',
      name: raw.svname ?? '',
      type: TYPES[num('type')] ?? 'server',
      status: (raw.status ?? '').replace(/ \d+\/\d+$/, ''),
      sessions: num('scur'),
      sessionsTotal: num('stot'),
      requestsTotal: num('req_tot'),
      queued: num('qcur'),
      weight: num('weight'),
      checkStatus: (raw.check_status ?? '').replace(/^\* /, ''),
      raw,
    });
  }
  return out;
}

/** `show info` as key → value. */
export function parseShowInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return out;
}

/** One process of the master CLI's `show proc`. */
export interface ProcRow {
  pid: number;
  kind: 'master' | 'worker' | 'old-worker' | 'program';
  reloads: number;
}

/** HAProxy's processes as the master reports them. */
export interface ProcInfo {
  masterPid: number;
  /** Times the master reloaded. */
  masterReloads: number;
  /** Reloads that failed (the master kept the old worker). */
  failedReloads: number;
  /** Current workers (one, unless a reload is under way). */
  workers: ProcRow[];
  /** Workers of earlier configurations still finishing their connections. */
  oldWorkers: ProcRow[];
}

/** Parses the master CLI's `show proc` (2.6 layout: sections `# workers`, `# old workers`, `# programs`). */
export function parseShowProc(text: string): ProcInfo {
  const info: ProcInfo = { masterPid: 0, masterReloads: 0, failedReloads: 0, workers: [], oldWorkers: [] };
  let section: ProcRow['kind'] = 'master';
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (t === '' || t.startsWith('#<')) continue;
    if (t.startsWith('#')) {
      section = /old/.test(t) ? 'old-worker' : /program/.test(t) ? 'program' : /worker/.test(t) ? 'worker' : section;
      continue;
    }
    const m = /^(\d+)\s+(\S+)\s+(\d+)/.exec(t);
    if (!m) continue;
    const row: ProcRow = { pid: Number(m[1]), kind: m[2] === 'master' ? 'master' : section, reloads: Number(m[3]) };
    if (row.kind === 'master') {
      info.masterPid = row.pid;
      info.masterReloads = row.reloads;
      info.failedReloads = Number(/\[failed:\s*(\d+)\]/.exec(t)?.[1] ?? 0);
    } else if (row.kind === 'worker') info.workers.push(row);
    else if (row.kind === 'old-worker') info.oldWorkers.push(row);
  }
  return info;
}

/** The integer value of a `get var` answer (`proc.x: type=sint value=<2>`), or undefined. */
export function parseVar(text: string): number | undefined {
  const m = /value=<(-?\d+)>/.exec(text);
  return m ? Number(m[1]) : undefined;
}

/** What the entry point reports for one replica. */
export interface LbServerStats {
  name: string;
  /** Pool slot (`backend/sN`), for reading HAProxy's own output. */
  slot: string;
  status: string;
  sessions: number;
  sessionsTotal: number;
  requestsTotal: number;
  weight: number;
  checkStatus: string;
}

/** What the entry point reports for one service. */
export interface LbServiceStats {
  service: string;
  backend: string;
  status: string;
  sessions: number;
  sessionsTotal: number;
  requestsTotal: number;
  /** Requests waiting to be queued to a server (HAProxy's queue, not holds). */
  queued: number;
  hold: { on: boolean; waiting: number };
  servers: LbServerStats[];
}

/** Projects `show stat` rows onto services through the slot assignment; `waiting` is per backend. */
export function serviceStats(rows: readonly StatRow[], state: LbState, waiting: ReadonlyMap<string, number> = new Map()): LbServiceStats[] {
  const byKey = new Map(rows.map((r) => [`${r.proxy}/${r.name}`, r]));
  const out: LbServiceStats[] = [];
  for (const [service, slot] of Object.entries(state.slots)) {
    const route = state.routes[service];
    const be = byKey.get(`${slot.backend}/BACKEND`);
    const servers: LbServerStats[] = [];
    for (const srv of route?.servers ?? []) {
      const idx = slot.servers[srv.name];
      if (idx === undefined) continue;
      const r = byKey.get(`${slot.backend}/s${idx}`);
      servers.push({
        name: srv.name,
        slot: `${slot.backend}/s${idx}`,
        status: r?.status ?? 'unknown',
        sessions: r?.sessions ?? 0,
        sessionsTotal: r?.sessionsTotal ?? 0,
        requestsTotal: r?.requestsTotal ?? 0,
        weight: r?.weight ?? 0,
        checkStatus: r?.checkStatus ?? '',
      });
    }
    out.push({
      service,
      backend: slot.backend,
      status: be?.status ?? 'unknown',
      sessions: be?.sessions ?? 0,
      sessionsTotal: be?.sessionsTotal ?? 0,
      requestsTotal: be?.requestsTotal ?? 0,
      queued: be?.queued ?? 0,
      hold: { on: route?.hold === true, waiting: waiting.get(slot.backend) ?? 0 },
      servers,
    });
  }
  return out.sort((a, b) => a.service.localeCompare(b.service));
}
