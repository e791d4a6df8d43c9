/** The store's error table. Codes are stable; controllers retry on CONFLICT and re-list on COMPACTED. */
import { defineErrors } from '../errors/index.ts';

/** Store errors; each message names the key, lease or revision involved. */
export const storeErrors = defineErrors({
  STORE_EXISTS: { status: 409, message: 'key "{key}" already exists (created at revision {createRevision})' },
  STORE_NOT_FOUND: { status: 404, message: 'key "{key}" does not exist' },
  STORE_CONFLICT: {
    status: 409,
    message: 'key "{key}" changed meanwhile: expected modRevision {expected}, found {actual}; read it again and retry',
  },
  STORE_COMPACTED: {
    status: 410,
    message: 'revision {revision} is compacted (history kept after revision {compactRevision}); list again and watch from the list revision',
  },
  STORE_LEASE_NOT_FOUND: { status: 404, message: 'lease {lease} does not exist or has expired' },
  STORE_CLOSED: { status: 503, message: 'the {backend} store is closed ({operation} refused)' },
  STORE_UNAVAILABLE: { status: 503, message: 'the {backend} store at {location} failed: {reason}' },
  STORE_BAD_URL: { status: 400, message: 'store URL "{url}" is not usable: {reason}' },
  STORE_INVALID: { status: 400, message: 'invalid {what}: {reason}' },
});
