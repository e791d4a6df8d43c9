import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkOverlay, overlayLinks, overlayMtu } from './overlay.ts';
import { parseSubnet } from './ipv4.ts';

const subnet = parseSubnet('10.216.0.0/16');
const ok = { vni: 4216, underlayIp: '10.215.3.11', hostIp: '10.216.0.2' };

test('overlay links are named after the bridge; a bridge name too long for the suffixes is refused', () => {
  assert.deepEqual(overlayLinks('ferry0'), { vxlan: 'ferry0x', hostSide: 'ferry0h', bridgeSide: 'ferry0p' });
  assert.throws(() => overlayLinks('abcdefghijklmno'), /too long for the cluster network/);
});

test('containers on the overlay get the underlay MTU minus the VXLAN overhead', () => {
  assert.equal(overlayMtu(ok), 1450);
  assert.equal(overlayMtu({ ...ok, underlayMtu: 9000 }), 8950);
});

test('an overlay config that cannot work is refused with the reason', () => {
  assert.doesNotThrow(() => checkOverlay(subnet, ok));
  assert.throws(() => checkOverlay(subnet, { ...ok, vni: 0 }), /VXLAN id 0 is outside/);
  assert.throws(() => checkOverlay(subnet, { ...ok, vni: 2 ** 24 }), /outside 1\.\.16777215/);
  assert.throws(() => checkOverlay(subnet, { ...ok, hostIp: '10.216.0.1' }), /not a usable address of 10\.216\.0\.0\/16/);
  assert.throws(() => checkOverlay(subnet, { ...ok, hostIp: '10.217.0.5' }), /not a usable address/);
  assert.throws(() => checkOverlay(subnet, { ...ok, underlayIp: 'host-a' }), /not an IPv4 address/);
  assert.throws(() => checkOverlay(subnet, { ...ok, underlayIp: '10.216.9.9' }), /lies inside the container subnet/);
});
