import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isFerryError } from '../errors/index.ts';
import { parseConstraint, parseConstraints, satisfies, violation } from './constraints.ts';

test('the four forms, spaces around the operator, and the region/zone shorthands', () => {
  assert.deepEqual(parseConstraint('disk==ssd'), { source: 'disk==ssd', key: 'disk', op: 'eq', value: 'ssd' });
  assert.deepEqual(parseConstraint(' disk != hdd '), { source: ' disk != hdd ', key: 'disk', op: 'ne', value: 'hdd' });
  assert.deepEqual(parseConstraint('gpu'), { source: 'gpu', key: 'gpu', op: 'exists' });
  assert.deepEqual(parseConstraint('!gpu'), { source: '!gpu', key: 'gpu', op: 'absent' });
  assert.equal(parseConstraint('region==eu').key, 'ferry.io/region');
  assert.equal(parseConstraint('zone!=eu-1a').key, 'ferry.io/zone');
  assert.equal(parseConstraint('example.com/tier==gold').key, 'example.com/tier');
  assert.equal(parseConstraints(['a', 'b==c']).length, 2);
});

test('bad input: a FerryError with a stable code and a hint that says how to write it', () => {
  const cases: [string, RegExp][] = [
    ['', /it is empty; write key==value/],
    ['   ', /it is empty/],
    ['disk=ssd', /use == for equality/],
    ['==ssd', /the label key is missing/],
    ['disk==', /value after == is missing; to require that the label be absent write !disk/],
    ['disk!=', /value after != is missing/],
    ['a==b==c', /one operator per constraint/],
    ['mem>=4', /unknown operator/],
    ['!disk==ssd', /"!" negates a bare key only; write key!=value/],
    ['bad key==x', /label key "bad key" may hold letters, digits/],
    ['-disk==x', /must start and end with a letter or digit/],
    ['disk==s s', /value "s s" may hold letters, digits/],
    ['!', /the label key is missing/],
  ];
  for (const [input, hint] of cases) {
    assert.throws(() => parseConstraint(input), (e: unknown) => {
      assert.ok(isFerryError(e, 'SCHEDULER_BAD_CONSTRAINT'), `${JSON.stringify(input)}: ${String(e)}`);
      assert.equal(e.status, 400);
      assert.match(e.message, new RegExp(`^invalid constraint "${input.replace(/[|\\{}()[\]^$+*?.]/g, '\\$&')}": `));
      assert.match(e.message, hint, JSON.stringify(input));
      return true;
    });
  }
  assert.throws(() => parseConstraints(['gpu', 'x=y']), /invalid constraint "x=y"/);
});

test('satisfies and violation: != holds on a node without the label; the reason names what the node has', () => {
  const labels = { disk: 'ssd', gpu: 'a100' };
  const check = (c: string, l: Record<string, string> = labels): boolean => satisfies(parseConstraint(c), l);
  assert.deepEqual([check('disk==ssd'), check('disk==hdd'), check('disk!=hdd'), check('disk!=ssd')], [true, false, true, false]);
  assert.deepEqual([check('gpu'), check('!gpu'), check('tpu'), check('!tpu')], [true, false, false, true]);
  assert.equal(check('disk!=hdd', {}), true);
  assert.equal(violation(parseConstraint('disk==hdd'), labels), "constraint disk==hdd not met: the node's disk is ssd");
  assert.equal(violation(parseConstraint('region==eu'), labels), 'constraint region==eu not met: the node has no label ferry.io/region');
});
