import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Migration } from '../../model/index.ts';
import { progressLine } from './migrations.ts';

const MiB = 1024 * 1024;
function mig(phase: string, progress?: Migration['status']['progress'], round = 0): Migration {
  return {
    apiVersion: 'ferry/v1', kind: 'Migration', metadata: { name: 'mig-1', uid: 'u', createdAt: '2026-01-01T00:00:00Z' },
    spec: { container: 'web', containerUid: 'c', from: 'a', to: 'b', strategy: 'stop-copy', checkOnly: false },
    status: { phase: phase as Migration['status']['phase'], strategy: 'stop-copy', strategyReason: '', round, history: [], checks: [], cancelRequested: false, bytes: 0, ...(progress ? { progress } : {}) },
  };
}

test('progress: phase, bytes, share of the estimate, ETA from the rate', () => {
  const line = progressLine(mig('Restore', { bytes: 256 * MiB, totalBytes: 1024 * MiB, updatedAt: 'x' }), 256 * MiB);
  assert.match(line!, /^ {2}Restore \[######-{18}\] 256MiB \/ ~1GiB 25% ETA 3\.0s$/);
  assert.match(progressLine(mig('Freeze', { bytes: 10 * MiB, updatedAt: 'x' }, 2), undefined)!, /Freeze round 2 \[-+\] 10MiB$/, 'no estimate: bytes only');
  assert.equal(progressLine(mig('Switch', { bytes: 10 * MiB, updatedAt: 'x' }), 1), undefined, 'nothing once memory has moved');
  assert.equal(progressLine(mig('Freeze'), 1), undefined, 'nothing before the first bytes');
});
