/**
 * Join tokens and node credentials: how a new host joins the cluster without the cluster token. An
 * admin makes a join token (`fjt.<id>.<secret>`, stored at `/ferry/join-tokens/<id>`); a host trades
 * it once for its own credential (`fac.<node>.<secret>`, stored at `/ferry/credentials/<node>`).
 * Only sha256 hashes of the secrets are stored.
 */
import { Type, type Static } from 'typebox';
import { isValidName } from './parse.ts';

/** How long a join token lives unless told otherwise: one hour. */
export const JOIN_TOKEN_DEFAULT_TTL_SECONDS = 3600;
/** The most joins one token may allow. */
export const JOIN_TOKEN_MAX_USES = 1000;

/** A join token as stored at `/ferry/join-tokens/<id>`. */
export const JoinTokenSchema = Type.Object({
  apiVersion: Type.Literal('ferry/v1'),
  kind: Type.Literal('JoinToken'),
  /** `name` is the token's public id (the middle part of `fjt.<id>.<secret>`). */
  metadata: Type.Object({ name: Type.String(), createdAt: Type.String() }),
  spec: Type.Object({
    /** sha256 (hex) of the secret part. */
    secretHash: Type.String(),
    expiresAt: Type.String(),
    /** Joins the token allowed when made. */
    uses: Type.Integer({ minimum: 1 }),
    /** Labels every node that joins with it gets. */
    labels: Type.Record(Type.String(), Type.String()),
  }),
  status: Type.Object({
    usesLeft: Type.Integer({ minimum: 0 }),
    /** Names of the nodes that joined with it, in order. */
    joined: Type.Array(Type.String()),
  }),
});
/** A join token as stored. */
export type JoinToken = Static<typeof JoinTokenSchema>;

/** What listing join tokens shows: everything but the secret's hash. */
export interface JoinTokenView {
  id: string;
  createdAt: string;
  expiresAt: string;
  expired: boolean;
  uses: number;
  usesLeft: number;
  labels: Record<string, string>;
  joined: string[];
}

/** The answer to creating a join token: the token itself, shown this once. */
export interface JoinTokenCreated {
  token: string;
  id: string;
  expiresAt: string;
  uses: number;
  labels: Record<string, string>;
}

/** A node's own agent credential as stored at `/ferry/credentials/<node>`. */
export const NodeCredentialSchema = Type.Object({
  apiVersion: Type.Literal('ferry/v1'),
  kind: Type.Literal('NodeCredential'),
  /** `name` is the node's name. */
  metadata: Type.Object({ name: Type.String(), createdAt: Type.String() }),
  spec: Type.Object({
    /** sha256 (hex) of the secret part. */
    secretHash: Type.String(),
    /** Id of the join token it was traded for. */
    joinToken: Type.String(),
    /** The join token's labels, applied to the node when it registers. */
    labels: Type.Record(Type.String(), Type.String()),
  }),
});
/** A node credential as stored. */
export type NodeCredential = Static<typeof NodeCredentialSchema>;

const SECRET = '[A-Za-z0-9_-]{16,128}';
const JOIN_TOKEN_RE = new RegExp(`^fjt\\.([0-9a-f]{8,32})\\.(${SECRET})$`);
const CREDENTIAL_RE = new RegExp(`^fac\\.(.+)\\.(${SECRET})$`);

/** The text form of a join token. */
export function formatJoinToken(id: string, secret: string): string {
  return `fjt.${id}.${secret}`;
}

/** Splits `fjt.<id>.<secret>`, or undefined when the text is no join token. */
export function parseJoinToken(text: string): { id: string; secret: string } | undefined {
  const m = JOIN_TOKEN_RE.exec(text.trim());
  return m ? { id: m[1]!, secret: m[2]! } : undefined;
}

/** The text form of a node credential. */
export function formatNodeCredential(node: string, secret: string): string {
  return `fac.${node}.${secret}`;
}

/** Splits `fac.<node>.<secret>` (node names may hold dots; secrets never do), or undefined. */
export function parseNodeCredential(text: string): { node: string; secret: string } | undefined {
  const m = CREDENTIAL_RE.exec(text);
  return m && isValidName(m[1]!) ? { node: m[1]!, secret: m[2]! } : undefined;
}
