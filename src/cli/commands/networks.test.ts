import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isFerryError } from '../../errors/index.ts';
import { createInput, networksTable } from './networks.ts';

test('network create: flags become the request; bad ones are usage errors', () => {
  assert.deepEqual(createInput('blue', {}), { name: 'blue', subnet: undefined, vni: undefined, labels: {} });
  assert.deepEqual(createInput('blue', { subnet: '10.217.3.0/24', vni: '77', label: ['env=prod', 'team=a=b'] }), {
    name: 'blue', subnet: '10.217.3.0/24', vni: 77, labels: { env: 'prod', team: 'a=b' },
  });
  const bad: [string, { vni?: string; label?: string[] }][] = [['bad name!', {}], ['blue', { vni: 'x' }], ['blue', { vni: '0' }], ['blue', { label: ['novalue'] }], ['blue', { label: ['=v'] }]];
  for (const [name, o] of bad) {
    assert.throws(() => createInput(name, o), (e) => isFerryError(e) && e.status === 400, `${name} ${JSON.stringify(o)}`);
  }
});

test('network ls: default first and marked, then the named ones with their container counts', () => {
  const out = networksTable([
    { name: 'default', default: true, subnet: '10.216.0.0/16', prefixLength: 16, gateway: '10.216.0.1', vni: 4216, labels: {}, containers: ['a', 'b'] },
    { name: 'blue', default: false, subnet: '10.217.0.0/24', prefixLength: 24, gateway: '10.217.0.1', vni: 4217, labels: {}, createdAt: new Date().toISOString(), containers: [] },
  ]).split('\n');
  assert.match(out[0]!, /^NAME\s+SUBNET\s+VNI\s+CONTAINERS\s+CREATED$/);
  assert.match(out[1]!, /^default \(cluster\)\s+10\.216\.0\.0\/16\s+4216\s+2\s+-$/);
  assert.match(out[2]!, /^blue\s+10\.217\.0\.0\/24\s+4217\s+0\s+\d+s ago$/);
});
