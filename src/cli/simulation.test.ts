import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  MAX_SIM_NODES, bridgeCommands, checkClusterSubnet, checkNodeCount, checkVni, chooseUnderlayOctet, formatCidr,
  freeUnderlayOctets, hostCommands, newSimId, overlaps, parseCidr, planSimulation,
} from './simulation.ts';
import { isFerryError } from '../errors/index.ts';

test('a sim id is 6 hex characters', () => {
  for (let i = 0; i < 20; i++) assert.match(newSimId(), /^[0-9a-f]{6}$/);
});

test('parseCidr masks host bits and rejects what is not an IPv4 CIDR', () => {
  assert.equal(formatCidr(parseCidr('10.215.7.9/24')!), '10.215.7.0/24');
  assert.equal(formatCidr(parseCidr('0.0.0.0/0')!), '0.0.0.0/0');
  assert.equal(formatCidr(parseCidr('192.0.2.2/32')!), '192.0.2.2/32');
  for (const bad of ['10.215.0.0', '10.215.0.0/33', '256.1.1.1/8', 'abc', '10.215.0/24', '', '::1/128']) assert.equal(parseCidr(bad), undefined, bad);
});

test('overlaps: containment either way, neighbours do not', () => {
  const c = (s: string) => parseCidr(s)!;
  assert.ok(overlaps(c('10.0.0.0/8'), c('10.215.3.0/24')));
  assert.ok(overlaps(c('10.215.3.0/24'), c('10.0.0.0/8')));
  assert.ok(overlaps(c('10.215.3.7/32'), c('10.215.3.0/24')));
  assert.ok(!overlaps(c('10.215.3.0/24'), c('10.215.4.0/24')));
  assert.ok(overlaps(c('0.0.0.0/0'), c('10.215.4.0/24')));
});

test('checkNodeCount accepts 1..MAX and rejects the rest with a clear flag error', () => {
  assert.equal(checkNodeCount('1'), 1);
  assert.equal(checkNodeCount('3'), 3);
  assert.equal(checkNodeCount(String(MAX_SIM_NODES)), MAX_SIM_NODES);
  for (const bad of ['0', 'abc', '65', String(MAX_SIM_NODES + 1), '-2', '2.5', '']) {
    assert.throws(() => checkNodeCount(bad), (e) => isFerryError(e, 'BAD_FLAG') && e.message.includes('--nodes'), bad);
  }
});

test('checkClusterSubnet wants a network address CIDR outside the underlay', () => {
  assert.equal(checkClusterSubnet('10.216.0.0/16'), '10.216.0.0/16');
  for (const bad of ['10.216.0.0', 'nope', '10.216.0.1/16', '10.0.0.0/7', '10.216.0.0/30', '10.215.0.0/16', '10.0.0.0/8']) {
    assert.throws(() => checkClusterSubnet(bad), (e) => isFerryError(e, 'BAD_FLAG') && e.message.includes('--cluster-subnet'), bad);
  }
});

test('checkVni accepts 1..2^24-1', () => {
  assert.equal(checkVni('4216'), 4216);
  for (const bad of ['0', '16777216', 'x']) assert.throws(() => checkVni(bad), (e) => isFerryError(e, 'BAD_FLAG'), bad);
});

test('freeUnderlayOctets skips every range a route or address overlaps, ignoring junk', () => {
  const free = freeUnderlayOctets(['10.215.1.0/24', '10.215.3.1/24', '10.215.200.0/22', '192.0.2.0/24', 'fe80::/64', 'garbage']);
  assert.ok(!free.includes(1) && !free.includes(3) && !free.includes(200) && !free.includes(203));
  assert.ok(free.includes(2) && free.includes(204));
  assert.equal(free.length, 254 - 6);
  assert.deepEqual(freeUnderlayOctets(['10.0.0.0/8']), []);
  assert.deepEqual(freeUnderlayOctets(['10.215.0.0/17']), Array.from({ length: 127 }, (_, i) => 128 + i));
});

test('chooseUnderlayOctet picks among the free ones, or none', () => {
  assert.equal(chooseUnderlayOctet([], () => 0), 1);
  assert.equal(chooseUnderlayOctet(['10.215.1.0/24'], () => 0), 2);
  assert.equal(chooseUnderlayOctet([], () => 0.9999), 254);
  assert.equal(chooseUnderlayOctet(['10.215.0.0/16']), undefined);
});

test('planSimulation names every host after the id and numbers addresses from .11', () => {
  const p = planSimulation('a1b2c3', 3, 42);
  assert.equal(p.bridge, 'fua1b2c3');
  assert.equal(p.subnet, '10.215.42.0/24');
  assert.equal(p.gateway, '10.215.42.1');
  assert.deepEqual(p.hosts[2], { index: 3, netns: 'ferry-a1b2c3-h3', veth: 'fua1b2c3h3', underlayIp: '10.215.42.13', cgroupParent: 'ferry-a1b2c3-h3', idPrefix: 'a1b2c3h3-' });
  // Interface names must fit the kernel's 15 characters even for the last host.
  const big = planSimulation('abcdef', MAX_SIM_NODES, 1);
  for (const h of big.hosts) assert.ok(h.veth.length <= 15, h.veth);
  assert.throws(() => planSimulation('xyz', 3, 1), (e) => isFerryError(e, 'BAD_FLAG'));
  assert.throws(() => planSimulation('abcd', 0, 1), (e) => isFerryError(e, 'BAD_FLAG'));
  assert.throws(() => planSimulation('abcd', 2, 255), (e) => isFerryError(e, 'BAD_FLAG'));
});

test('the ip commands build the bridge, then each host from its netns out', () => {
  const p = planSimulation('abcd', 2, 9);
  assert.deepEqual(bridgeCommands(p), ['link add fuabcd type bridge', 'addr add 10.215.9.1/24 dev fuabcd', 'link set fuabcd up']);
  assert.deepEqual(hostCommands(p, p.hosts[1]!), {
    root: ['netns add ferry-abcd-h2', 'link add fuabcdh2 type veth peer name eth0 netns ferry-abcd-h2', 'link set fuabcdh2 master fuabcd up'],
    inside: ['addr add 10.215.9.12/24 dev eth0', 'link set lo up', 'link set eth0 up'],
  });
});
