/**
 * Bearer-token authentication shared by the manager and agent APIs. The manager knows two kinds of
 * caller: the cluster token (admin: every route) and a joined node's credential (only the calls its
 * agent makes, and only for its own node).
 */
import { timingSafeEqual, randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Store } from '../store/index.ts';
import { keys, parseJoinToken } from '../model/index.ts';
import { apiErrors } from './errors.ts';
import { verifyNodeCredential } from './join.ts';

/** Who made a request. */
export type Caller = { kind: 'admin' } | { kind: 'node'; node: string };

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the auth hook; null on the routes that need no token. */
    caller: Caller | null;
  }
}

/** True when `given` equals `token`, in constant time. */
function sameToken(given: string, token: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

const HOW = 'send Authorization: Bearer <token> (the CLI reads it from FERRY_TOKEN or the ferry.json that `ferry up` writes)';

/** Throws UNAUTHORIZED unless `header` is `Bearer <token>`. */
export function checkToken(header: string | undefined, token: string): void {
  const m = /^Bearer\s+(.+)$/.exec(header ?? '');
  if (!m) throw apiErrors.UNAUTHORIZED({ hint: HOW });
  if (!sameToken(m[1]!, token)) throw apiErrors.UNAUTHORIZED({ hint: 'the token does not match this cluster' });
}

/** Finds out who sent `header`: the cluster token, or a joined node's credential; throws UNAUTHORIZED otherwise. */
export async function authenticate(header: string | undefined, token: string, store: Store): Promise<Caller> {
  const m = /^Bearer\s+(.+)$/.exec(header ?? '');
  if (!m) throw apiErrors.UNAUTHORIZED({ hint: HOW });
  const given = m[1]!;
  if (sameToken(given, token)) return { kind: 'admin' };
  if (given.startsWith('fac.')) {
    const node = await verifyNodeCredential(store, given);
    if (node !== undefined) return { kind: 'node', node };
    throw apiErrors.UNAUTHORIZED({ hint: 'this node credential is not (or no longer) valid; join the node again with a new token from `ferry node token create`' });
  }
  if (parseJoinToken(given)) {
    throw apiErrors.UNAUTHORIZED({ hint: 'that is a join token: it is only traded for a node credential by `ferry agent --join <url> --token <token>`; API calls need the cluster token' });
  }
  throw apiErrors.UNAUTHORIZED({ hint: 'the token does not match this cluster' });
}

const field = (o: unknown, k: string): string | undefined => {
  const v = (o as Record<string, unknown> | null | undefined)?.[k];
  return typeof v === 'string' ? v : undefined;
};

/** Why a node may not make this call for `target`, or undefined when `target` is the node itself. */
const forNode = (target: string | undefined, node: string): string | undefined => (target === node ? undefined : `act for node "${target ?? '?'}"`);

/** Undefined when `prefix` lies inside the node's own assignments, else why not. */
const ownAssignments = (prefix: string | undefined, node: string): string | undefined =>
  prefix?.startsWith(keys.assignments(node)) ? undefined : `read ${prefix ?? 'that prefix'} (only its own assignments, ${keys.assignments(node)})`;

/**
 * The calls an agent makes (see agent/daemon.ts), each with its scope check: what the call would
 * do beyond the node's own business, or undefined when it stays within it. Checked after the
 * request is validated, so params, query and body are there.
 */
const NODE_ROUTES: Record<string, (req: FastifyRequest, node: string) => string | undefined> = {
  'POST /v1/agent/register': (r, n) => forNode(field(r.body, 'name'), n),
  'POST /v1/agent/:name/heartbeat': (r, n) => forNode(field(r.params, 'name'), n),
  'PUT /v1/agent/:name/images': (r, n) => forNode(field(r.params, 'name'), n),
  'PUT /v1/agent/status/:name': (r, n) => forNode(field(r.body, 'node'), n),
  'DELETE /v1/agent/status/:name': (r, n) => forNode(field(r.query, 'node'), n),
  'GET /v1/kv': (r, n) => ownAssignments(field(r.query, 'prefix'), n),
  'GET /v1/watch': (r, n) => ownAssignments(field(r.query, 'prefix'), n),
  'GET /v1/migrations/:id': () => undefined,
  'GET /v1/nodes': () => undefined,
  'GET /v1/agent/token': () => undefined,
  // Every node answers DNS for the containers of any network it may host: names and addresses only.
  'GET /v1/agent/names': () => undefined,
};

const routeOf = (req: FastifyRequest): string | undefined => (req.routeOptions.url === undefined ? undefined : `${req.method} ${req.routeOptions.url}`);

/**
 * Guards every route of `app`: /healthz, /openapi.json, the dashboard's files (/, /ui/) and the join exchange need no token (the
 * join token in the body is the credential); everything else needs the cluster token, except the
 * agent calls, which a joined node's credential may also make for its own node.
 */
export function installAuth(app: FastifyInstance, deps: { token: string; store: Store }): void {
  app.decorateRequest('caller', null);
  app.addHook('onRequest', async (req) => {
    const path = req.url.split('?')[0];
    if (path === '/healthz' || path === '/openapi.json') return;
    // The dashboard's static files hold no data; its /v1 calls carry the token like any other.
    if (req.method === 'GET' && (path === '/' || path === '/ui' || path?.startsWith('/ui/'))) return;
    if (req.method === 'POST' && path === '/v1/agent/join') return;
    const caller = await authenticate(req.headers.authorization, deps.token, deps.store);
    req.caller = caller;
    const route = routeOf(req);
    // Unknown routes go on to the 404 handler.
    if (caller.kind === 'node' && route !== undefined && !(route in NODE_ROUTES)) {
      throw apiErrors.NODE_CREDENTIAL_FORBIDDEN({ node: caller.node, what: `call ${route}` });
    }
  });
  app.addHook('preHandler', async (req) => {
    const caller = req.caller;
    const rule = NODE_ROUTES[routeOf(req) ?? ''];
    if (caller?.kind !== 'node' || !rule) return;
    const what = rule(req, caller.node);
    if (what !== undefined) throw apiErrors.NODE_CREDENTIAL_FORBIDDEN({ node: caller.node, what });
  });
}

/** A new random token. */
export function newToken(): string {
  return randomBytes(24).toString('base64url');
}
