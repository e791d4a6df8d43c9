/**
 * Outbound NAT on the cluster network (`ferry up --nodes 2 --outbound-nat`): a container reaches a
 * network beyond its host, masqueraded as the host. "Beyond" is a namespace this test makes and
 * wires to host 1 only (10.214.R.0/30), so nothing leaves the machine.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { useCluster, type TestCluster } from './support/cluster.ts';
import { skipUnlessReady } from './support/prereq.ts';
import { until } from './support/wait.ts';

const TOOLS = ['runc', 'ip', 'iptables', 'ebtables', 'bridge', 'nsenter', '/usr/bin/busybox'];

describe('outbound NAT on the cluster network', { skip: skipUnlessReady(TOOLS) }, () => {
  const cluster = useCluster({ nodes: 2, tools: TOOLS, upArgs: ['--outbound-nat'] });
  let c: TestCluster;
  before(() => { c = cluster.c; });

  it('a container reaches a network beyond its host, seen there as the host', async () => {
    const tag = randomBytes(3).toString('hex');
    const outside = `ferry-nat-${tag}`;
    const link = `fo${tag}`;
    const r = 1 + (Number.parseInt(tag.slice(0, 2), 16) % 250);
    const [hostSide, far] = [`10.214.${r}.1`, `10.214.${r}.2`];
    const ip = (...args: string[]): void => { execFileSync('ip', args, { stdio: 'pipe' }); };
    ip('netns', 'add', outside);
    let server: ReturnType<typeof spawn> | undefined;
    try {
      ip('link', 'add', link, 'type', 'veth', 'peer', 'name', 'out0', 'netns', outside);
      ip('link', 'set', link, 'netns', c.hosts[0]!.netns);
      ip('-n', c.hosts[0]!.netns, 'addr', 'add', `${hostSide}/30`, 'dev', link);
      ip('-n', c.hosts[0]!.netns, 'link', 'set', link, 'up');
      ip('-n', outside, 'addr', 'add', `${far}/30`, 'dev', 'out0');
      ip('-n', outside, 'link', 'set', 'out0', 'up');
      // The far side answers every connection with the address it came from.
      server = spawn('nsenter', [`--net=/run/netns/${outside}`, '--', process.execPath, '-e',
        `require('net').createServer((s) => s.end(s.remoteAddress + '\\n')).listen(9000, '${far}', () => console.log('ready'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((res, rej) => { server!.stdout!.once('data', () => res()); server!.once('exit', (code) => rej(new Error(`server exited ${code}`))); });

      await c.ok(['run', '--name', 'out', '--node', c.hosts[0]!.node, 'sample']);
      const v = await until('out to run', async () => {
        const cv = await c.client.containers.get('out');
        return cv.status?.phase === 'running' && cv.status.ip ? cv : undefined;
      });
      const seen = await c.ok(['exec', 'out', '--', 'timeout', '5', 'nc', far, '9000']);
      assert.equal(seen.trim(), hostSide, `the far side saw ${seen.trim()} (the container is ${v.status!.ip})`);
      await c.ok(['rm', '-f', 'out']);
    } finally {
      server?.kill('SIGKILL');
      // Deleting one end of the veth deletes both; then the namespace.
      try { ip('-n', c.hosts[0]!.netns, 'link', 'del', link); } catch { /* never made, or gone */ }
      ip('netns', 'del', outside);
    }
  });
});
