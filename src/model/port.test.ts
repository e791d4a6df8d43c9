import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isFerryError } from '../errors/index.ts';
import { parsePort } from './index.ts';

test('parsePort reads the accepted forms', () => {
  assert.deepEqual(parsePort('8080:80'), { hostIp: '0.0.0.0', hostPort: 8080, containerPort: 80, protocol: 'tcp' });
  assert.deepEqual(parsePort('127.0.0.1:8080:80'), { hostIp: '127.0.0.1', hostPort: 8080, containerPort: 80, protocol: 'tcp' });
  assert.deepEqual(parsePort('80'), { hostIp: '0.0.0.0', hostPort: 80, containerPort: 80, protocol: 'tcp' });
  assert.deepEqual(parsePort('8080:80/tcp'), { hostIp: '0.0.0.0', hostPort: 8080, containerPort: 80, protocol: 'tcp' });
  assert.deepEqual(parsePort('80/TCP'), { hostIp: '0.0.0.0', hostPort: 80, containerPort: 80, protocol: 'tcp' });
  assert.deepEqual(parsePort(' 10.0.0.5:1:65535 '), { hostIp: '10.0.0.5', hostPort: 1, containerPort: 65535, protocol: 'tcp' });
  assert.deepEqual(parsePort('[::1]:8080:80'), { hostIp: '::1', hostPort: 8080, containerPort: 80, protocol: 'tcp' });
});

test('parsePort rejects bad specs with BAD_PORT naming the spec and the reason', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /empty/],
    ['0', /outside 1-65535/],
    ['8080:0', /container port 0 is outside/],
    ['0:80', /host port 0 is outside/],
    ['65536:80', /host port 65536 is outside/],
    ['80:99999999999', /outside/],
    ['http', /not a number/],
    ['8o80:80', /not a number/],
    ['-1:80', /not a number/],
    ['+80', /not a number/],
    ['80.5', /not a number/],
    ['80/udp', /udp is not supported yet/],
    ['8080:80/sctp', /sctp is not supported yet/],
    ['80/icmp', /unknown protocol/],
    ['8000-8010:80', /ranges are not supported/],
    [':80', /host port is missing/],
    ['8080:', /container port is missing/],
    ['1.2.3:8080:80', /not an IPv4 address/],
    ['256.1.1.1:8080:80', /not an IPv4 address/],
    ['localhost:8080:80', /not an IPv4 address/],
    ['a:b:c:d', /expected/],
    ['[1.2.3.4]:8080:80', /not an IPv6 address/],
    ['[::1]:80', /expected/],
  ];
  for (const [spec, reason] of cases) {
    assert.throws(() => parsePort(spec), (e: unknown) => {
      assert.ok(isFerryError(e, 'BAD_PORT'), `${spec}: ${String(e)}`);
      assert.equal(e.status, 400);
      assert.match(e.message, reason, spec);
      assert.ok(e.message.includes(`"${spec}"`), e.message);
      return true;
    });
  }
});
