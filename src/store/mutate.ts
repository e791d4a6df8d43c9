/** Read-modify-write with compare-and-swap, retried on conflict: the way controllers change objects. */
import type { KeyValue, Store } from './types.ts';
import { isFerryError } from '../errors/index.ts';

/**
 * Applies `fn` to the current value and writes the result if nobody wrote in between; retries on
 * conflict. `fn` returns the new value, or undefined to leave the key as it is. Throws
 * FERRY_ERR_STORE_NOT_FOUND when the key does not exist.
 */
export async function mutate<T>(store: Store, key: string, fn: (current: T) => T | undefined, attempts = 20): Promise<KeyValue<T>> {
  for (let i = 0; ; i++) {
    const kv = await store.get<T>(key);
    if (!kv) {
      // Let the store raise its own NOT_FOUND error for a consistent code and message.
      return store.update<T>(key, undefined as T, 0);
    }
    const next = fn(structuredClone(kv.value));
    if (next === undefined) return kv;
    try {
      return await store.update<T>(key, next, kv.modRevision);
    } catch (e) {
      if (i < attempts && isFerryError(e, 'STORE_CONFLICT')) continue;
      throw e;
    }
  }
}

/** Creates or replaces the key without caring about its revision (for reports that only their writer owns). */
export async function put<T>(store: Store, key: string, value: T, options?: { lease?: number }): Promise<KeyValue<T>> {
  for (let i = 0; ; i++) {
    const kv = await store.get<T>(key);
    try {
      return kv ? await store.update<T>(key, value, kv.modRevision, options) : await store.create<T>(key, value, options);
    } catch (e) {
      if (i < 20 && (isFerryError(e, 'STORE_CONFLICT') || isFerryError(e, 'STORE_EXISTS') || isFerryError(e, 'STORE_NOT_FOUND'))) continue;
      throw e;
    }
  }
}

/** Deletes the key if it exists; no error when it is already gone. */
export async function remove(store: Store, key: string): Promise<boolean> {
  try {
    await store.delete(key);
    return true;
  } catch (e) {
    if (isFerryError(e, 'STORE_NOT_FOUND')) return false;
    throw e;
  }
}
