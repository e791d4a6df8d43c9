/**
 * Joining hosts: admins make join tokens; a host trades one for its own node credential. Only
 * sha256 hashes of secrets reach the store, and a token's uses are counted down with the store's
 * revision check, so two hosts racing for the last use cannot both get it.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Store } from '../store/index.ts';
import { mutate, put, remove } from '../store/index.ts';
import { isFerryError } from '../errors/index.ts';
import type { JoinToken, JoinTokenCreated, JoinTokenView, NodeCredential } from '../model/index.ts';
import {
  JOIN_TOKEN_DEFAULT_TTL_SECONDS, checkName, formatJoinToken, formatNodeCredential, keys, parseJoinToken, parseNodeCredential,
} from '../model/index.ts';
import { apiErrors } from './errors.ts';

/** sha256 (hex) of a secret. */
function hashOf(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** Compares a secret with a stored hash in constant time. */
function matches(secret: string, storedHash: string): boolean {
  const a = Buffer.from(hashOf(secret), 'hex');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

/** What a new join token allows. */
export interface JoinTokenRequest {
  ttlSeconds?: number;
  uses?: number;
  labels?: Record<string, string>;
}

/** Makes a join token; its text is in the answer only, never in the store. */
export async function createJoinToken(store: Store, r: JoinTokenRequest, now = Date.now()): Promise<JoinTokenCreated> {
  const id = randomBytes(8).toString('hex');
  const secret = randomBytes(24).toString('base64url');
  const uses = r.uses ?? 1;
  const labels = r.labels ?? {};
  const expiresAt = new Date(now + (r.ttlSeconds ?? JOIN_TOKEN_DEFAULT_TTL_SECONDS) * 1000).toISOString();
  const t: JoinToken = {
    apiVersion: 'ferry/v1', kind: 'JoinToken',
    metadata: { name: id, createdAt: new Date(now).toISOString() },
    spec: { secretHash: hashOf(secret), expiresAt, uses, labels },
    status: { usesLeft: uses, joined: [] },
  };
  await store.create(keys.joinToken(id), t);
  return { token: formatJoinToken(id, secret), id, expiresAt, uses, labels };
}

/** Every join token, oldest first, without secrets. */
export async function listJoinTokens(store: Store, now = Date.now()): Promise<JoinTokenView[]> {
  const all = (await store.list<JoinToken>(keys.joinTokens)).items.map(({ value: t }) => ({
    id: t.metadata.name, createdAt: t.metadata.createdAt, expiresAt: t.spec.expiresAt, expired: Date.parse(t.spec.expiresAt) <= now,
    uses: t.spec.uses, usesLeft: t.status.usesLeft, labels: t.spec.labels, joined: t.status.joined,
  }));
  return all.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

/** Deletes join token `id` (nodes that joined with it keep their credentials). */
export async function removeJoinToken(store: Store, id: string): Promise<void> {
  if (!(await remove(store, keys.joinToken(id)))) throw apiErrors.JOIN_TOKEN_NOT_FOUND({ id });
}

/**
 * Throws unless `t` may admit one more node. Expiry and use count are told only to a caller who
 * holds the secret; anyone else hears "not valid", whether or not the id exists.
 */
function checkUsable(t: JoinToken | undefined, secret: string, now: number): asserts t is JoinToken {
  if (!t || !matches(secret, t.spec.secretHash)) throw apiErrors.JOIN_TOKEN_INVALID({ reason: 'no such token, or a wrong secret' });
  if (Date.parse(t.spec.expiresAt) <= now) throw apiErrors.JOIN_TOKEN_EXPIRED({ id: t.metadata.name, expiresAt: t.spec.expiresAt });
  if (t.status.usesLeft <= 0) throw apiErrors.JOIN_TOKEN_USED_UP({ id: t.metadata.name, uses: t.spec.uses });
}

/**
 * Trades a join token for node `name`'s own credential: checks the token, refuses a name a live
 * node holds, counts one use down (compare-and-swap), and stores the hash of a new credential,
 * replacing the node's earlier one. Returns the credential's text, shown this once.
 */
export async function joinNode(store: Store, name: string, tokenText: string, now = Date.now()): Promise<{ node: string; credential: string }> {
  checkName(name);
  const parsed = parseJoinToken(tokenText);
  if (!parsed) throw apiErrors.JOIN_TOKEN_INVALID({ reason: 'it is not a join token: those look like fjt.<id>.<secret>' });
  const key = keys.joinToken(parsed.id);
  checkUsable((await store.get<JoinToken>(key))?.value, parsed.secret, now);
  // A live node keeps its name: a second host must not take over its assignments.
  if (await store.get(keys.nodeAlive(name))) throw apiErrors.NODE_NAME_TAKEN({ name });
  let token: JoinToken;
  try {
    token = (await mutate<JoinToken>(store, key, (t) => {
      checkUsable(t, parsed.secret, now);
      t.status.usesLeft -= 1;
      t.status.joined.push(name);
      return t;
    }, 100)).value;
  } catch (e) {
    if (isFerryError(e, 'STORE_NOT_FOUND')) throw apiErrors.JOIN_TOKEN_INVALID({ reason: 'no such token, or a wrong secret' });
    throw e;
  }
  const secret = randomBytes(32).toString('base64url');
  const cred: NodeCredential = {
    apiVersion: 'ferry/v1', kind: 'NodeCredential',
    metadata: { name, createdAt: new Date(now).toISOString() },
    spec: { secretHash: hashOf(secret), joinToken: parsed.id, labels: token.spec.labels },
  };
  await put(store, keys.nodeCredential(name), cred);
  return { node: name, credential: formatNodeCredential(name, secret) };
}

/** The node a credential belongs to, or undefined when it is no valid node credential. */
export async function verifyNodeCredential(store: Store, text: string): Promise<string | undefined> {
  const parsed = parseNodeCredential(text);
  if (!parsed) return undefined;
  const kv = await store.get<NodeCredential>(keys.nodeCredential(parsed.node));
  return kv && matches(parsed.secret, kv.value.spec.secretHash) ? parsed.node : undefined;
}

/** The labels a joined node's token gives it (none for nodes that did not join with a token). */
export async function joinLabels(store: Store, node: string): Promise<Record<string, string>> {
  return (await store.get<NodeCredential>(keys.nodeCredential(node)))?.value.spec.labels ?? {};
}
