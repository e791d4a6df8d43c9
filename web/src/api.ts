/**
 * The dashboard's door to the manager: the same typed client the CLI uses (src/client), with the
 * cluster token the user gave (a login field, or `#token=…` in the URL as `ferry dashboard` prints it).
 */
import type { ContainerView, Migration, Node, ServiceView } from '../../src/model/index.ts';

/** A node as GET /v1/nodes lists it (src/client's NodeView). */
export interface NodeView {
  node: Node;
  /** Ready, NotReady, or (from managers that track node health) Suspect / Down. */
  state: string;
  /** Why it is not Ready, when the manager says. */
  reason?: string;
  containers: number;
}

export type { ContainerView, Migration, ServiceView };

/** An error the manager answered with: its stable code, HTTP status and message (which says what to do). */
export class ApiError extends Error {
  readonly code: string;
  readonly status: number;
  constructor(code: string, status: number, message: string) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

type Strategy = Migration['spec']['strategy'];

/**
 * The calls the dashboard makes, shaped like src/client's FerryClient (whose HTTP layer is typed
 * for Node's fetch, not the DOM's); every call sends the cluster token.
 */
export class FerryClient {
  constructor(private readonly token: string, private readonly base = location.origin) {}

  /** Sends a request; a status >= 400 becomes an ApiError with the manager's code and message. */
  async send(method: string, path: string, o: { body?: unknown; query?: Record<string, string | undefined>; signal?: AbortSignal } = {}): Promise<Response> {
    const u = new URL(path, this.base);
    for (const [k, v] of Object.entries(o.query ?? {})) if (v !== undefined) u.searchParams.set(k, v);
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}` };
    if (o.body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(u, { method, headers, body: o.body === undefined ? undefined : JSON.stringify(o.body), signal: o.signal });
    if (res.status >= 400) {
      const text = await res.text().catch(() => '');
      let j: { code?: string; message?: string } = {};
      try { j = JSON.parse(text) as typeof j; } catch { /* not JSON */ }
      throw new ApiError(j.code ?? 'FERRY_ERR_HTTP', res.status, j.message ?? `HTTP ${res.status}: ${text.slice(0, 200)}`);
    }
    return res;
  }

  private async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    return (await (await this.send(method, path, { body })).json()) as T;
  }

  readonly nodes = {
    list: (): Promise<NodeView[]> => this.json('GET', '/v1/nodes'),
    cordon: (name: string): Promise<NodeView> => this.json('POST', `/v1/nodes/${enc(name)}/cordon`),
    uncordon: (name: string): Promise<NodeView> => this.json('POST', `/v1/nodes/${enc(name)}/uncordon`),
  };

  readonly containers = {
    list: (): Promise<ContainerView[]> => this.json('GET', '/v1/containers'),
    stats: (name: string): Promise<Record<string, unknown>> => this.json('GET', `/v1/containers/${enc(name)}/stats`),
  };

  readonly services = {
    list: (): Promise<ServiceView[]> => this.json('GET', '/v1/services'),
    /** The service's `path` through a live entry point; the body streams. */
    stream: (name: string, o: { path?: string; signal?: AbortSignal } = {}): Promise<Response> =>
      this.send('GET', `/v1/services/${enc(name)}/stream`, { query: { path: o.path ?? '/' }, signal: o.signal }),
  };

  readonly migrations = {
    create: (body: { container: string; to?: string; strategy?: Strategy; check?: boolean }): Promise<Migration> => this.json('POST', '/v1/migrations', body),
    list: (): Promise<Migration[]> => this.json('GET', '/v1/migrations'),
    get: (id: string): Promise<Migration> => this.json('GET', `/v1/migrations/${enc(id)}`),
    cancel: (id: string): Promise<Migration> => this.json('POST', `/v1/migrations/${enc(id)}/cancel`),
  };
}

const enc = encodeURIComponent;

const KEY = 'ferry.token';

/** The token from `#token=…` (moved into localStorage and off the address bar), else the stored one. */
export function initialToken(): string | undefined {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    const t = decodeURIComponent(m[1]!);
    localStorage.setItem(KEY, t);
    // Out of the address bar and the history: a screenshot or a shared link must not carry it.
    history.replaceState(null, '', location.pathname + location.search);
    return t;
  }
  return localStorage.getItem(KEY) ?? undefined;
}

/** Remembers the token for the next visit. */
export function saveToken(t: string): void {
  localStorage.setItem(KEY, t);
}

/** Forgets the token (sign out). */
export function forgetToken(): void {
  localStorage.removeItem(KEY);
}

/** A client of the manager that served this page. */
export function clientFor(token: string): FerryClient {
  return new FerryClient(token);
}

/** Phases after which a migration does nothing more. */
export const TERMINAL = new Set(['Succeeded', 'RolledBack', 'Failed']);

/** True when the migration has ended. */
export const ended = (m: Migration): boolean => TERMINAL.has(m.status.phase);

/** The node a container runs on (its status), or where it is placed. */
export const nodeOf = (v: ContainerView): string | undefined => v.status?.node || v.container.placement?.node;

/** Region and zone labels of a node ('' when unlabelled). */
export function topology(n: NodeView): { region: string; zone: string } {
  const l = n.node.metadata.labels;
  return { region: l['ferry.io/region'] ?? '', zone: l['ferry.io/zone'] ?? '' };
}

/** Follows migration `id` until it ends, calling `seen` with every state; resolves with the last one. */
export async function follow(client: FerryClient, id: string, seen: (m: Migration) => void, o: { everyMs?: number; signal?: AbortSignal } = {}): Promise<Migration> {
  for (;;) {
    const m = await client.migrations.get(id);
    seen(m);
    if (ended(m)) return m;
    if (o.signal?.aborted) return m;
    await new Promise((r) => setTimeout(r, o.everyMs ?? 250));
  }
}

/** Runs the prechecks of moving `container` to `to` (a check-only migration) and returns its end state. */
export async function precheck(client: FerryClient, container: string, to: string, strategy?: Migration['spec']['strategy']): Promise<Migration> {
  const m = await client.migrations.create({ container, to, check: true, ...(strategy ? { strategy } : {}) });
  return follow(client, m.metadata.name, () => undefined, { everyMs: 200 });
}

/** True when a check-only migration passed every check. */
export const passed = (m: Migration): boolean => m.status.phase === 'Succeeded' && m.status.checks.every((c) => c.ok);

/** Error text for the user: the API's message, which says what to do. */
export const why = (e: unknown): string => (e instanceof Error ? e.message : String(e));
