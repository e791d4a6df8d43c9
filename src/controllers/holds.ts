/**
 * Holds at the entry point: while a migration freezes a service replica, the entry points keep new
 * requests for it waiting (or send them to the other replicas) instead of letting them hit a frozen
 * process; the hold ends the moment the restored copy runs (or the source resumes).
 */
import type { Store } from '../store/index.ts';
import { put, remove } from '../store/index.ts';
import type { Container } from '../model/index.ts';
import { keys, keyName, SERVICE_LABELS } from '../model/index.ts';

/** A hold as stored at `/ferry/lb/holds/<container>`; entry points add their name to `acks` once in force. */
export interface Hold {
  readonly container: string;
  readonly uid: string;
  readonly service: string;
  readonly migration: string;
  readonly since: string;
  readonly acks: string[];
}

/** How long a freeze waits for the entry points to confirm a hold (they may be slow or gone). */
export const HOLD_ACK_WAIT_MS = 1000;

/**
 * Puts a hold on replica `c` for `migration` and waits (bounded) until every running entry point
 * has it in force. Returns a line for the migration's history, or undefined when nothing was held
 * (not a service replica, or no entry point runs).
 */
export async function holdAtEntryPoints(store: Store, c: Container, migration: string, waitMs = HOLD_ACK_WAIT_MS): Promise<string | undefined> {
  const service = c.spec.labels[SERVICE_LABELS.service];
  if (!service) return undefined;
  const lbs = (await store.list(keys.entryPoints)).items.map((kv) => keyName(kv.key));
  if (lbs.length === 0) return undefined;
  const hold: Hold = { container: c.metadata.name, uid: c.metadata.uid, service, migration, since: new Date().toISOString(), acks: [] };
  const t0 = Date.now();
  const rev = (await put(store, keys.hold(c.metadata.name), hold)).modRevision;
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), waitMs);
  const confirmed = (h: Hold | undefined): boolean => h !== undefined && lbs.every((n) => h.acks.includes(n));
  try {
    if (!confirmed((await store.get<Hold>(keys.hold(c.metadata.name)))?.value)) {
      for await (const ev of store.watch(keys.hold(c.metadata.name), { afterRevision: rev, signal: ac.signal })) {
        if (ev.type === 'put' && confirmed(ev.kv.value as Hold)) break;
      }
    }
  } catch (e) {
    if (!ac.signal.aborted) throw e;
  } finally {
    clearTimeout(timer);
  }
  const h = (await store.get<Hold>(keys.hold(c.metadata.name)))?.value;
  return confirmed(h)
    ? `entry points hold new requests for ${c.metadata.name} (confirmed in ${Date.now() - t0} ms)`
    : `entry points did not confirm the hold within ${waitMs} ms (${(h?.acks ?? []).join(', ') || 'none'} of ${lbs.join(', ')}); freezing anyway`;
}

/** Ends the hold on `container` (idempotent): the entry points let its requests through again. */
export async function releaseHold(store: Store, container: string): Promise<void> {
  await remove(store, keys.hold(container));
}
