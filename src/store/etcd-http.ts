/**
 * The wire under the etcd backend: etcd's v3 JSON gateway (`/v3/kv/*`, `/v3/lease/*`, `/v3/watch`)
 * spoken with Node's own fetch, so Ferry needs no gRPC dependency. Keys and values travel as base64,
 * int64 fields as decimal strings, and fields equal to their zero value are left out of answers.
 */
import { storeErrors } from './errors.ts';
import type { FerryError } from '../errors/index.ts';

/** A key-value pair as the gateway sends it. */
export interface RawKv {
  readonly key: string;
  readonly value?: string;
  readonly create_revision?: string;
  readonly mod_revision?: string;
  readonly version?: string;
  readonly lease?: string;
}

/** The header every answer carries. */
export interface RawHeader {
  readonly revision?: string;
}

/** An error answer of the gateway: `code` is the gRPC status code. */
interface RawError {
  readonly error?: string;
  readonly message?: string;
  readonly code?: number;
}

/** A failure reported by etcd itself (as opposed to not reaching it), with its gRPC message. */
export class EtcdAnswerError extends Error {
  constructor(readonly grpcCode: number, message: string) {
    super(message);
    this.name = 'EtcdAnswerError';
  }
}

/**
 * A write whose request was cut off after it was sent (no answer in time, connection reset): etcd may
 * or may not have applied it. The store turns it into STORE_UNAVAILABLE once it gives up.
 */
export class EtcdCutOffError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EtcdCutOffError';
  }
}

/** gRPC UNAVAILABLE: no leader, leader changed, or "request timed out, possibly due to previous leader failure". */
export const GRPC_UNAVAILABLE = 14;

/** How long one unary request may take before the endpoint counts as failed. */
const REQUEST_TIMEOUT_MS = 10_000;

/** Error codes of fetch's cause meaning the request never reached a server, so trying another one is safe. */
const NOT_SENT = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);

/** Base64 of the UTF-8 bytes of `s`. */
export function b64(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64');
}

/** Text of base64-encoded UTF-8 bytes. */
export function unb64(s: string | undefined): string {
  return s === undefined ? '' : Buffer.from(s, 'base64').toString('utf8');
}

/** An int64 field as a number (absent means 0); etcd revisions and Ferry's lease ids stay below 2^53. */
export function int(s: string | number | undefined): number {
  return s === undefined ? 0 : Number(s);
}

/**
 * The base64 range end that covers every key starting with `prefix` (etcd's GetPrefixRangeEnd: the
 * last byte below 0xff incremented, 0xff bytes after it dropped); "\0" (every key) when there is none.
 */
export function rangeEnd(prefix: string): string {
  const bytes = Buffer.from(prefix, 'utf8');
  for (let i = bytes.length - 1; i >= 0; i--) {
    if ((bytes[i] as number) < 0xff) {
      const end = Buffer.from(bytes.subarray(0, i + 1));
      end[i] = (bytes[i] as number) + 1;
      return end.toString('base64');
    }
  }
  return Buffer.from([0]).toString('base64');
}

/** The reason a fetch failed, and whether the request surely never left (so another endpoint may be tried). */
function describeFailure(e: unknown): { reason: string; notSent: boolean } {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  if (err.name === 'TimeoutError') return { reason: `no answer within ${REQUEST_TIMEOUT_MS / 1000} s`, notSent: false };
  const code = err.cause?.code;
  return { reason: code ?? err.cause?.message ?? err.message, notSent: code !== undefined && NOT_SENT.has(code) };
}

/**
 * A list of etcd endpoints used one at a time: requests go to the current one; when it cannot be
 * reached the next is tried (and kept), so a cluster stays usable while a member is down.
 */
export class EtcdEndpoints {
  private current = 0;

  constructor(readonly urls: readonly string[]) {}

  /** Where the store lives, for error messages. */
  get location(): string {
    return this.urls.join(',');
  }

  /** The endpoint requests go to now. */
  get active(): string {
    return this.urls[this.current] as string;
  }

  /** Moves to the next endpoint (after a failure of `failed`, unless another request moved on already). */
  advance(failed: string): void {
    if (this.active === failed) this.current = (this.current + 1) % this.urls.length;
  }

  /** STORE_UNAVAILABLE naming every endpoint and the last reason. */
  unavailable(reason: string, cause?: unknown): FerryError {
    return storeErrors.STORE_UNAVAILABLE({ backend: 'etcd', location: this.location, reason }, cause);
  }

  /**
   * POSTs `body` to `path` and returns the parsed answer. A request that surely never reached an
   * endpoint is tried on the others; `idempotent` requests (reads) are also retried after timeouts
   * and transport errors. Errors etcd answers with are thrown as EtcdAnswerError (so is "every member
   * answered UNAVAILABLE"); a write cut off after it was sent as EtcdCutOffError.
   */
  async call<T>(path: string, body: unknown, idempotent = false): Promise<T> {
    let last = '';
    let unavailableAnswer = false;
    for (let tries = 0; tries < this.urls.length; tries++) {
      const url = this.active;
      let res: Response;
      try {
        res = await fetch(`${url}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        });
      } catch (e) {
        const { reason, notSent } = describeFailure(e);
        last = `${url}: ${reason}`;
        this.advance(url);
        if (notSent || idempotent) continue;
        throw new EtcdCutOffError(`${last} (the write may or may not have been applied)`, { cause: e });
      }
      const text = await res.text().catch((e: unknown) => {
        throw this.unavailable(`${url}: the answer broke off (${(e as Error).message})`, e);
      });
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        throw this.unavailable(`${url} answered HTTP ${res.status} with something other than JSON: ${text.slice(0, 200)}`);
      }
      const err = parsed as RawError;
      if (res.status >= 400 || err.error !== undefined) {
        const message = err.message ?? err.error ?? `HTTP ${res.status}`;
        // gRPC UNAVAILABLE: this member lost its leader or is stopping; another member may serve reads.
        if (err.code === GRPC_UNAVAILABLE && idempotent) {
          last = `${url}: ${message}`;
          unavailableAnswer = true;
          this.advance(url);
          continue;
        }
        throw new EtcdAnswerError(err.code ?? 2, message);
      }
      return parsed as T;
    }
    // Members that answer but cannot serve (an election is under way) are worth waiting for.
    if (unavailableAnswer) throw new EtcdAnswerError(GRPC_UNAVAILABLE, `no member could serve it (last: ${last})`);
    throw this.unavailable(`no endpoint answered (last: ${last}); is etcd running there?`);
  }
}
