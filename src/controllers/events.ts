/** Writes cluster events (src/model/event.ts) and trims the oldest beyond EVENTS_KEPT. */
import type { Store } from '../store/index.ts';
import type { ClusterEvent } from '../model/index.ts';
import { EVENTS_KEPT, eventId, keys } from '../model/index.ts';

let counter = 0;

/** Records an event (best effort: an event that cannot be written never fails the caller's work). */
export async function recordEvent(store: Store, e: Omit<ClusterEvent, 'at'>): Promise<void> {
  const now = Date.now();
  const ev: ClusterEvent = { at: new Date(now).toISOString(), ...e };
  try {
    await store.create(keys.event(eventId(now, ++counter)), ev);
    if (counter % 50 === 0) await trim(store);
  } catch {
    // Events are for people; the state change they describe is already stored.
  }
}

async function trim(store: Store): Promise<void> {
  const { items } = await store.list(keys.events);
  for (const kv of items.slice(0, Math.max(0, items.length - EVENTS_KEPT))) await store.delete(kv.key).catch(() => undefined);
}
