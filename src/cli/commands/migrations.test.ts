import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Migration } from '../../model/index.ts';
import { progressLine, report } from './migrations.ts';

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
  assert.match(progressLine(mig('Freeze', { bytes: 10 * MiB, updatedAt: 'x' }, 2), undefined)!, /^ {2}Freeze after round 2 \[-+\] 10MiB$/, 'no estimate: bytes only');
  assert.equal(progressLine(mig('Switch', { bytes: 10 * MiB, updatedAt: 'x' }), 1), undefined, 'nothing once memory has moved');
  assert.equal(progressLine(mig('Freeze'), 1), undefined, 'nothing before the first bytes');
  // Pre-copy: the first round copies all of memory while the container runs; later ones only changes.
  assert.match(progressLine(mig('Copy', { bytes: 512 * MiB, totalBytes: 1024 * MiB, updatedAt: 'x' }, 0), 512 * MiB)!, /^ {2}Copy round 1 \[#{12}-{12}\] 512MiB \/ ~1GiB 50% ETA 1\.0s$/);
  assert.equal(progressLine(mig('Copy', { bytes: 1024 * MiB, totalBytes: 1024 * MiB, updatedAt: 'x' }, 1), 1), undefined);
});

test('report: a --check run says nothing moved and lists every check; a real one its figures and only the failed checks', () => {
  const checks = [{ check: 'target-capacity', ok: true, reason: 'b has room' }, { check: 'dumpable', ok: false, reason: 'an inotify watch' }];
  const checked = { ...mig('Succeeded'), spec: { ...mig('Succeeded').spec, checkOnly: true } };
  checked.status = { ...checked.status, strategyReason: 'asked for', checks: [checks[0]!] };
  const ok = report(checked);
  assert.match(ok, /^Check mig-1: web a → b: every precheck passed; nothing moved \(--check\)$/m);
  assert.match(ok, /^ {2}ok {9}target-capacity: b has room$/m);
  assert.doesNotMatch(ok, /freeze|bytes|rounds/, 'no figures for a run that moved nothing');
  const refused = { ...checked, status: { ...checked.status, phase: 'Failed' as const, checks, error: 'prechecks failed' } };
  assert.match(report(refused), /: 1 precheck\(s\) failed; nothing moved/);
  assert.match(report(refused), /^ {2}FAIL {7}dumpable: an inotify watch$/m);
  const moved = mig('Succeeded');
  moved.status = { ...moved.status, freezeMs: 512.4, totalMs: 1300, bytes: 2 * MiB, round: 1, checks };
  const r = report(moved);
  assert.match(r, /^Migration mig-1: web a → b: Succeeded$/m);
  assert.match(r, /^ {2}freeze {5}512 ms$/m);
  assert.match(r, /^ {2}bytes {6}2MiB$/m);
  assert.doesNotMatch(r, /target-capacity/, 'passed checks are not listed after a real run');
  assert.match(r, /FAIL {7}dumpable/);
});
