import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isFerryError } from '../../errors/index.ts';
import { checkPortMapping, formatPortMapping } from './index.ts';

test('checkPortMapping guards mappings that did not come from a spec', () => {
  checkPortMapping({ hostIp: '127.0.0.1', hostPort: 1, containerPort: 65535, protocol: 'tcp' });
  const bad = [
    { hostIp: '127.0.0.1', hostPort: 0, containerPort: 80, protocol: 'tcp' },
    { hostIp: '127.0.0.1', hostPort: 80, containerPort: 1.5, protocol: 'tcp' },
    { hostIp: 'nope', hostPort: 80, containerPort: 80, protocol: 'tcp' },
    { hostIp: '127.0.0.1', hostPort: 80, containerPort: 80, protocol: 'udp' },
  ];
  for (const m of bad) assert.throws(() => checkPortMapping(m as never), (e: unknown) => isFerryError(e, 'NET_BAD_PORT'));
  assert.equal(formatPortMapping({ hostIp: '::1', hostPort: 8080, containerPort: 80, protocol: 'tcp' }), '[::1]:8080:80/tcp');
});
