/** The HTTP plumbing every Ferry client shares: JSON requests, error decoding, NDJSON streams. */
import { FerryError } from '../errors/index.ts';

/** Where to reach an API and how to authenticate. */
export interface Endpoint {
  /** Base URL, e.g. `http://127.0.0.1:7670`. */
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

/** Sends a request and returns the raw response; throws a FerryError for error statuses and network failures. */
export async function send(ep: Endpoint, method: string, path: string, opts: RequestOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { ...opts.headers };
  if (ep.token) headers.authorization = `Bearer ${ep.token}`;
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
    res = await fetch(buildUrl(ep.url, path, opts.query), { method, headers, body, signal: opts.signal, ...(duplex ? { duplex } : {}) } as RequestInit);
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    const reason = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new FerryError('FERRY_ERR_UNREACHABLE', 503, `cannot reach ${ep.url}: ${reason?.code ?? reason?.message ?? (e as Error).message}`, { url: ep.url }, { cause: e });
  }
  if (res.status >= 400) throw await decodeError(res);
  return res;
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
