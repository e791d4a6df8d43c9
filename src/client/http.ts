/** The HTTP plumbing every Ferry client shares: JSON requests, error decoding, NDJSON streams. */
import { FerryError } from '../errors/index.ts';

/** Where to reach an API and how to authenticate. */
export interface Endpoint {
  /**
   * Base URL, e.g. `http://127.0.0.1:7670`, or several managers' URLs separated by commas: requests
   * then follow the leader (see `send`).
   */
  readonly url: string;
  /** Bearer token. */
  readonly token?: string;
}

/** Options of one request. */
export interface RequestOptions {
  readonly query?: Record<string, string | number | boolean | undefined>;
  readonly body?: unknown;
  /** A raw body (stream or bytes) sent as application/octet-stream instead of JSON. */
  readonly rawBody?: AsyncIterable<Uint8Array> | Uint8Array;
  readonly signal?: AbortSignal;
  readonly headers?: Record<string, string>;
}

/** Builds the full URL with query parameters. */
export function buildUrl(base: string, path: string, query?: RequestOptions['query']): string {
  const u = new URL(path, base.endsWith('/') ? base : `${base}/`);
  for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) u.searchParams.set(k, String(v));
  return u.toString();
}

/** Error codes of fetch's cause meaning nothing reached the server, so another one may be asked. */
const NOT_SENT = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);

/** Response header a standby manager names the leader's URL in (with FERRY_ERR_NOT_LEADER); the manager's LEADER_HEADER. */
export const LEADER_HEADER = 'x-ferry-leader';

/** The URL that last answered for each comma list, so later requests go straight to the leader. */
const lastGood = new Map<string, string>();

/** The URLs of an endpoint (one, or a comma-separated list of managers). */
export function endpointUrls(ep: Endpoint): string[] {
  const urls = ep.url.split(',').map((u) => u.trim()).filter((u) => u !== '');
  return urls.length > 0 ? urls : [ep.url];
}

/**
 * Sends a request and returns the raw response; throws a FerryError for error statuses and network
 * failures. With several manager URLs it starts at the one that answered last; a standby's
 * FERRY_ERR_NOT_LEADER sends it to the leader the answer names, a refused connection to the next URL
 * — each URL tried at most once per request (also a single URL's named leader). Streamed bodies cannot
 * be replayed, so they go to one URL.
 */
export async function send(ep: Endpoint, method: string, path: string, opts: RequestOptions = {}): Promise<Response> {
  const urls = endpointUrls(ep);
  const replayable = !(opts.rawBody !== undefined && !(opts.rawBody instanceof Uint8Array));
  const tried = new Set<string>();
  let next: string | undefined = lastGood.get(ep.url) ?? urls[0];
  const untried = (): string | undefined => urls.find((u) => !tried.has(u));
  let failure: FerryError | undefined;
  while (next !== undefined) {
    const url: string = next;
    tried.add(url);
    const r = await sendOnce(url, ep.token, method, path, opts);
    if (r.ok) {
      if (url !== urls[0] || lastGood.has(ep.url)) lastGood.set(ep.url, url);
      return r.res;
    }
    // An answer that is not about who leads is the answer, whatever it says.
    if (r.error.code !== 'FERRY_ERR_NOT_LEADER' && !r.notSent) throw r.error;
    failure = r.error;
    if (!replayable) break;
    next = r.leader !== undefined && !tried.has(r.leader) ? r.leader : untried();
  }
  lastGood.delete(ep.url);
  throw failure as FerryError;
}

type Attempt = { ok: true; res: Response } | { ok: false; error: FerryError; notSent: boolean; leader?: string };

/** One request to one URL. */
async function sendOnce(base: string, token: string | undefined, method: string, path: string, opts: RequestOptions): Promise<Attempt> {
  const headers: Record<string, string> = { ...opts.headers };
  if (token) headers.authorization = `Bearer ${token}`;
  let body: RequestInit['body'];
  let duplex: 'half' | undefined;
  if (opts.rawBody !== undefined) {
    headers['content-type'] = 'application/octet-stream';
    body = opts.rawBody instanceof Uint8Array ? opts.rawBody : (ReadableStream.from(opts.rawBody) as unknown as RequestInit['body']);
    duplex = opts.rawBody instanceof Uint8Array ? undefined : 'half';
  } else if (opts.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  let res: Response;
  try {
    res = await fetch(buildUrl(base, path, opts.query), { method, headers, body, signal: opts.signal, ...(duplex ? { duplex } : {}) } as RequestInit);
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    const reason = (e as { cause?: { code?: string; message?: string } }).cause;
    const error = new FerryError('FERRY_ERR_UNREACHABLE', 503, `cannot reach ${base}: ${reason?.code ?? reason?.message ?? (e as Error).message}`, { url: base }, { cause: e });
    return { ok: false, error, notSent: reason?.code !== undefined && NOT_SENT.has(reason.code) };
  }
  if (res.status < 400) return { ok: true, res };
  const error = await decodeError(res);
  const named = res.headers.get(LEADER_HEADER) ?? (typeof error.details.leader === 'string' ? error.details.leader : undefined);
  return named ? { ok: false, error, notSent: false, leader: named } : { ok: false, error, notSent: false };
}

/** Turns an error response into the FerryError the server meant. */
export async function decodeError(res: Response): Promise<FerryError> {
  const text = await res.text().catch(() => '');
  try {
    const j = JSON.parse(text) as { code?: string; message?: string; details?: Record<string, unknown> };
    if (j.code && j.message) return new FerryError(j.code, res.status, j.message, j.details ?? {});
  } catch { /* not JSON */ }
  return new FerryError('FERRY_ERR_HTTP', res.status, `HTTP ${res.status}: ${text.slice(0, 500) || res.statusText}`);
}

/** Sends a JSON request and parses the JSON answer. */
export async function requestJson<T>(ep: Endpoint, method: string, path: string, opts: RequestOptions = {}): Promise<T> {
  const res = await send(ep, method, path, opts);
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

/** Yields one parsed object per line of an NDJSON response body. */
export async function* ndjson<T>(res: Response): AsyncGenerator<T> {
  if (!res.body) return;
  const decoder = new TextDecoder();
  let buf = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line) yield JSON.parse(line) as T;
    }
  }
  const rest = (buf + decoder.decode()).trim();
  if (rest) yield JSON.parse(rest) as T;
}

/** One frame of an exec stream. */
export type ExecFrame =
  | { stream: 'stdout' | 'stderr'; data: string }
  | { exitCode: number }
  | { error: { code: string; message: string } };
