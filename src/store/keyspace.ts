/** Checks and orderings every backend shares, so they agree on what a valid key, value and order are. */
import { storeErrors } from './errors.ts';

// With the `u` flag this matches only surrogates that are not part of a pair.
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/** Throws STORE_INVALID unless `key` is a non-empty, well-formed string. */
export function checkKey(key: unknown): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) {
    throw storeErrors.STORE_INVALID({ what: 'key', reason: 'a key is a non-empty string' });
  }
  // SQLite stores UTF-8, which would silently turn a lone surrogate into U+FFFD: two keys would collide.
  if (LONE_SURROGATE.test(key)) throw storeErrors.STORE_INVALID({ what: 'key', reason: `"${key}" holds a lone UTF-16 surrogate` });
}

/** Throws STORE_INVALID unless `prefix` is a string (empty means every key). */
export function checkPrefix(prefix: unknown): asserts prefix is string {
  if (typeof prefix !== 'string') throw storeErrors.STORE_INVALID({ what: 'prefix', reason: 'a prefix is a string' });
  if (LONE_SURROGATE.test(prefix)) throw storeErrors.STORE_INVALID({ what: 'prefix', reason: 'it holds a lone UTF-16 surrogate' });
}

/** Returns the JSON text of `value`, or throws STORE_INVALID when it has none (undefined, functions, cycles, BigInt). */
export function encodeValue(key: string, value: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (e) {
    throw storeErrors.STORE_INVALID({ what: 'value', reason: `the value of "${key}" is not JSON-serializable` }, e);
  }
  if (typeof text !== 'string') {
    throw storeErrors.STORE_INVALID({ what: 'value', reason: `the value of "${key}" is ${typeof value}, which JSON cannot hold` });
  }
  return text;
}

/** Throws STORE_INVALID unless `n` is an integer ≥ 0 (a revision or lease id). */
export function checkRevision(n: unknown, what: string): asserts n is number {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
    throw storeErrors.STORE_INVALID({ what, reason: `${String(n)} is not an integer ≥ 0` });
  }
}

/** Throws STORE_INVALID unless `ttl` is a positive, finite number of seconds. */
export function checkTtl(ttl: unknown): asserts ttl is number {
  if (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl <= 0) {
    throw storeErrors.STORE_INVALID({ what: 'lease TTL', reason: `${String(ttl)} is not a positive number of seconds` });
  }
}

/** Throws STORE_INVALID unless `limit` is undefined or an integer ≥ 0 (0 means no limit). */
export function checkLimit(limit: unknown): asserts limit is number | undefined {
  if (limit !== undefined) checkRevision(limit, 'list limit');
}

// Maps a UTF-16 code unit so that comparing mapped units orders strings by code point (surrogates
// stand for code points above U+FFFF, so they must sort after U+E000..U+FFFF).
function unitRank(c: number): number {
  return c >= 0xe000 ? c - 0x800 : c >= 0xd800 ? c + 0x2000 : c;
}

/** Orders keys by Unicode code point, which is also SQLite's (UTF-8 byte) order, so every backend lists alike. */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return unitRank(x) - unitRank(y);
  }
  return a.length - b.length;
}

/**
 * The smallest string greater than every string that starts with `prefix` (in code point order), or
 * undefined when there is none (empty prefix, or only U+10FFFF characters): then the range is open.
 */
export function prefixEnd(prefix: string): string | undefined {
  const points = Array.from(prefix);
  while (points.length > 0) {
    const last = points.pop() as string;
    const cp = last.codePointAt(0) as number;
    if (cp < 0x10ffff) {
      const next = cp === 0xd7ff ? 0xe000 : cp + 1; // skip the surrogate block, which no text holds
      return points.join('') + String.fromCodePoint(next);
    }
  }
  return undefined;
}
