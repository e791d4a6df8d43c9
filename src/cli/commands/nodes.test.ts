import { test } from 'node:test';
import assert from 'node:assert/strict';
import { networkOf, zoneOf } from './nodes.ts';

test('node ls: the zone comes from the region and zone labels', () => {
  assert.equal(zoneOf({ region: 'eu', zone: 'a', other: 'x' }), 'eu/a');
  assert.equal(zoneOf({ zone: 'b' }), 'b');
  assert.equal(zoneOf({}), '-');
});

test('node ls: the network column says overlay (with both addresses) or the local subnet', () => {
  assert.equal(networkOf({ underlayIp: '10.215.3.11', hostIp: '10.216.0.2' }), 'overlay 10.216.0.2 via 10.215.3.11');
  assert.equal(networkOf({ subnet: '10.213.0.0/24' }), 'local 10.213.0.0/24');
  assert.equal(networkOf(undefined), '-');
});
