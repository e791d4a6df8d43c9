/**
 * The one test suite every Store backend must pass (as kine's and Hono's shared suites do): call
 * `runStoreConformance` from a backend's test file with a function that opens a fresh, empty store.
 */
import { describe } from 'node:test';
import type { OpenStore } from './conformance-kit.ts';
import { kvCases } from './conformance-kv.ts';
import { watchCases } from './conformance-watch.ts';
import { leaseCases } from './conformance-lease.ts';

/** Registers the conformance suite (node:test) for the backend `name`; `open` returns a fresh store and its cleanup. */
export function runStoreConformance(name: string, open: OpenStore): void {
  describe(`${name} store conformance`, () => {
    describe('keys and values', () => kvCases(open));
    describe('watches and compaction', () => watchCases(open));
    describe('leases', () => leaseCases(open));
  });
}
