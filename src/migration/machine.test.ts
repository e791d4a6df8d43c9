import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initial, step, recover, type MachineState, type MigrationEvent, type MigrationAction } from './machine.ts';
import { FORWARD, runsOn, type MigrationPhase } from './phases.ts';

function run(s: MachineState, events: MigrationEvent[]): { state: MachineState; actions: MigrationAction[]; phases: MigrationPhase[] } {
  const actions: MigrationAction[] = [];
  const phases: MigrationPhase[] = [s.phase];
  for (const e of events) {
    const r = step(s, e);
    assert.ok(r.ok, `${e.type} in ${s.phase}: ${r.ok ? '' : r.reason}`);
    s = r.state;
    actions.push(...r.actions);
    phases.push(s.phase);
  }
  return { state: s, actions, phases };
}

const HAPPY: Record<string, MigrationEvent[]> = {
  'stop-copy': [{ type: 'start' }, { type: 'precheck-passed' }, { type: 'prepared' }, { type: 'frozen' }, { type: 'transferred' }, { type: 'restored' }, { type: 'switched' }, { type: 'cleaned' }],
  'pre-copy': [
    { type: 'start' }, { type: 'precheck-passed' }, { type: 'prepared' }, { type: 'round-done', converged: false }, { type: 'round-done', converged: false },
    { type: 'round-done', converged: true }, { type: 'frozen' }, { type: 'transferred' }, { type: 'restored' }, { type: 'switched' }, { type: 'cleaned' },
  ],
};

test('stop-copy passes every forward phase but Copy, in order', () => {
  const r = run(initial('stop-copy'), HAPPY['stop-copy']!);
  assert.deepEqual(r.phases, FORWARD.filter((p) => p !== 'Copy'));
  assert.deepEqual(r.actions, ['run-prechecks', 'prepare-target', 'freeze-and-dump', 'transfer-final', 'restore-target', 'record-switch', 'destroy-source']);
});

test('pre-copy loops in Copy until a round converges, counting rounds', () => {
  const r = run(initial('pre-copy'), HAPPY['pre-copy']!);
  assert.equal(r.state.phase, 'Succeeded');
  assert.equal(r.state.round, 3);
  assert.equal(r.actions.filter((a) => a === 'copy-round').length, 3);
});

test('--check stops after the prechecks', () => {
  const r = run(initial('stop-copy', true), [{ type: 'start' }, { type: 'precheck-passed' }]);
  assert.equal(r.state.phase, 'Succeeded');
  assert.deepEqual(r.actions, ['run-prechecks']);
});

test('failed prechecks end the migration with the reasons and touch nothing', () => {
  const r = run(initial('stop-copy'), [{ type: 'start' }, { type: 'precheck-failed', reasons: ['target lacks CPU flag avx512f', 'image missing'] }]);
  assert.equal(r.state.phase, 'Failed');
  assert.match(r.state.error!, /avx512f; image missing/);
  assert.deepEqual(r.actions, ['run-prechecks']);
});

test('a failure or cancel before the switch rolls back: resume the source, destroy the target', () => {
  for (const phase of ['Prepare', 'Copy', 'Freeze', 'Transfer', 'Restore'] as MigrationPhase[]) {
    for (const ev of [{ type: 'error', message: 'disk full' }, { type: 'cancel' }] as MigrationEvent[]) {
      const r = step({ ...initial('pre-copy'), phase }, ev);
      assert.ok(r.ok);
      assert.equal(r.state.phase, 'RollingBack', `${ev.type} in ${phase}`);
      assert.deepEqual(r.actions, ['resume-source', 'destroy-target']);
      assert.equal(r.state.failedIn, phase);
      const done = step(r.state, { type: 'rolled-back' });
      assert.equal(done.state.phase, 'RolledBack');
    }
  }
});

test('after the switch there is no going back: cancel is refused, errors retry forward, fatal loss fails', () => {
  for (const phase of ['Switch', 'Cleanup'] as MigrationPhase[]) {
    const s = { ...initial('post-copy'), phase };
    const c = step(s, { type: 'cancel' });
    assert.equal(c.ok, false);
    assert.match(!c.ok ? c.reason : '', /too late to cancel/);
    const e = step(s, { type: 'error', message: 'store busy' });
    assert.ok(e.ok);
    assert.equal(e.state.phase, phase);
    assert.ok(!e.actions.includes('resume-source'));
    const fatal = step(s, { type: 'error', message: 'source died before every page arrived', fatal: true });
    assert.equal(fatal.state.phase, 'Failed');
  }
});

test('a cancel before anything moved needs no rollback', () => {
  const r = step({ ...initial('stop-copy'), phase: 'Precheck' }, { type: 'cancel' });
  assert.equal(r.state.phase, 'RolledBack');
  assert.deepEqual(r.ok && r.actions, []);
});

test('events out of place are refused and change nothing', () => {
  const s = { ...initial('stop-copy'), phase: 'Copy' as MigrationPhase };
  assert.equal(step(initial('stop-copy'), { type: 'restored' }).ok, false);
  assert.equal(step({ ...initial('stop-copy'), phase: 'Succeeded' }, { type: 'start' }).ok, false);
  const r = step(s, { type: 'switched' });
  assert.equal(r.ok, false);
  assert.equal(r.state, s);
});

test('recovery after a crash: roll back before the switch, finish forward after it', () => {
  const cases: [MigrationPhase, MigrationPhase, MigrationAction[]][] = [
    ['Precheck', 'RolledBack', []],
    ['Prepare', 'RollingBack', ['resume-source', 'destroy-target']],
    ['Copy', 'RollingBack', ['resume-source', 'destroy-target']],
    ['Freeze', 'RollingBack', ['resume-source', 'destroy-target']],
    ['Transfer', 'RollingBack', ['resume-source', 'destroy-target']],
    ['Restore', 'RollingBack', ['resume-source', 'destroy-target']],
    ['Switch', 'Switch', ['record-switch']],
    ['Cleanup', 'Cleanup', ['destroy-source']],
    ['RollingBack', 'RollingBack', ['resume-source', 'destroy-target']],
    ['Succeeded', 'Succeeded', []],
  ];
  for (const [from, to, actions] of cases) {
    const r = recover({ ...initial('stop-copy'), phase: from });
    assert.equal(r.state.phase, to, from);
    assert.deepEqual(r.ok && [...r.actions], actions, from);
  }
});

test('invariant over random event sequences: never on two hosts, never destroyed early', () => {
  const all: MigrationEvent[] = [
    { type: 'start' }, { type: 'precheck-passed' }, { type: 'prepared' }, { type: 'round-done', converged: false },
    { type: 'round-done', converged: true }, { type: 'frozen' }, { type: 'transferred' }, { type: 'restored' },
    { type: 'switched' }, { type: 'cleaned' }, { type: 'cancel' }, { type: 'error', message: 'x' },
    { type: 'rolled-back' }, { type: 'rollback-failed', message: 'y' },
  ];
  let seed = 42;
  const rnd = (n: number): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
  for (let trial = 0; trial < 2000; trial++) {
    let s = initial((['stop-copy', 'pre-copy', 'post-copy'] as const)[rnd(3)]!);
    let restored = false;
    let switched = false;
    for (let i = 0; i < 30; i++) {
      const e = all[rnd(all.length)]!;
      const r = step(s, e);
      if (!r.ok) { assert.equal(r.state, s); continue; }
      if (e.type === 'restored') restored = true;
      for (const a of r.actions) {
        if (a === 'record-switch') assert.ok(restored, 'switch only after the target confirmed its restore');
        if (a === 'destroy-source') assert.ok(restored && switched, 'source destroyed only after restore + recorded switch');
        if (a === 'resume-source') assert.ok(!switched, 'the source never resumes once the target owns the container');
      }
      if (s.phase === 'Switch' && e.type === 'switched') switched = true;
      // Where it runs is always exactly one place (or frozen in between).
      assert.ok(['source', 'frozen', 'target'].includes(runsOn(r.state.phase)));
      s = r.state;
    }
  }
});
