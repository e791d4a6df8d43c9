/** Bearer-token authentication shared by the manager and agent APIs. */
import { timingSafeEqual, randomBytes } from 'node:crypto';
import { apiErrors } from './errors.ts';

/** Throws UNAUTHORIZED unless `header` is `Bearer <token>`. */
export function checkToken(header: string | undefined, token: string): void {
  const m = /^Bearer\s+(.+)$/.exec(header ?? '');
  if (!m) throw apiErrors.UNAUTHORIZED({ hint: 'send Authorization: Bearer <token> (the CLI reads it from FERRY_TOKEN or the ferry.json that `ferry up` writes)' });
  const a = Buffer.from(m[1]!);
  const b = Buffer.from(token);
  if (a.length !== b.length || !timingSafeEqual(a, b)) throw apiErrors.UNAUTHORIZED({ hint: 'the token does not match this cluster' });
}

/** A new random token. */
export function newToken(): string {
  return randomBytes(24).toString('base64url');
}
