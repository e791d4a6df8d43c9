/**
 * The cluster network on three simulated hosts (`ferry up --nodes 3`: a network namespace, agent,
 * data dir and cgroup parent each, joined over an underlay bridge): one flat container subnet over
 * VXLAN, addresses from the store, traffic between containers on different hosts, and a container
 * that keeps its address — and one client's TCP connection — while it moves A→B→C→A.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { lineClient, useCluster, type TestCluster } from './support/cluster.ts';
import { skipUnlessReady } from './support/prereq.ts';
import { until } from './support/wait.ts';
import type { ContainerView, Migration } from '../src/model/index.ts';

const TOOLS = ['runc', 'ip', 'iptables', 'ebtables', 'bridge', 'nsenter', '/usr/bin/busybox', '/opt/ferry/bin/criu'];
const ECHO_PORT = 7000;

describe('cluster network across three simulated hosts', { skip: skipUnlessReady(TOOLS) }, () => {
  const cluster = useCluster({ nodes: 3, tools: TOOLS });
  let c: TestCluster;
  before(() => { c = cluster.c; });

  const ipOf = async (name: string): Promise<string> => {
    const v = await until(`${name} to run`, async () => {
      const cv = await c.client.containers.get(name);
      return cv.status?.phase === 'running' && cv.status.ip ? cv : undefined;
    });
    return v.status!.ip!;
  };

  it('a container on host A talks to one on host C, by address, through the overlay', async () => {
    const [a, , cHost] = c.hosts;
    await c.ok(['run', '--name', 'srv', '--node', a!.node, '-e', `ECHO_PORT=${ECHO_PORT}`, 'sample']);
    await c.ok(['run', '--name', 'peer', '--node', cHost!.node, 'sample']);
    const [srvIp, peerIp] = [await ipOf('srv'), await ipOf('peer')];
    assert.notEqual(srvIp, peerIp);
    const net = await c.client.network.get();
    const table = await c.ok(['node', 'ls']);
    for (const h of c.hosts) assert.match(table, new RegExp(`${h.node}\\s+Ready.*overlay 10\\.\\S+ via ${h.underlayIp.replace(/\./g, '\\.')}`));
    for (const ip of [srvIp, peerIp]) assert.ok(ip.startsWith(net.subnet.split('.').slice(0, 2).join('.')), `${ip} in ${net.subnet}`);
    // (The app may still be binding its port when its container reports running: try for a while.)
    const body = await until('peer on host C to fetch from srv on host A', async () => {
      const x = await c.cli(['exec', 'peer', '--', 'timeout', '3', 'wget', '-q', '-O', '-', `http://${srvIp}/count`]);
      return x.code === 0 ? x.stdout : undefined;
    }, 20_000);
    assert.match(body, /"count":\d+/);
    // A host reaches containers on other hosts too (through its own overlay address).
    const r = await c.exec(1, ['/usr/bin/busybox', 'wget', '-q', '-O', '-', `http://${srvIp}/count`]);
    assert.match(r.stdout, /"count":\d+/);
  });

  it('containers cannot reach the underlay: not their host, not other hosts, not the manager', async () => {
    const [a, , cHost] = c.hosts;
    const nodes = await c.client.nodes.list();
    const agentUrlOf = (n: string): string => nodes.find((v) => v.node.metadata.name === n)!.node.status.address;
    // The host itself reaches the manager: the rules are about where the traffic comes from.
    // (busybox wget's own -T crashes here; `timeout` bounds the dropped attempts instead.)
    const fromHost = await c.exec(2, ['/usr/bin/busybox', 'wget', '-q', '-O', '-', `${c.managerUrl}/healthz`]);
    assert.equal(fromHost.code, 0, fromHost.stderr);
    const fetchFromPeer = (url: string): Promise<{ code: number; stdout: string }> => c.cli(['exec', 'peer', '--', 'timeout', '3', 'wget', '-q', '-O', '-', url]);
    const control = await fetchFromPeer(`http://${await ipOf('srv')}/count`);
    assert.equal(control.code, 0, 'the same fetch of a container works');
    // Each refused fetch waits out its 3 s, so the three wait side by side.
    await Promise.all([`${agentUrlOf(cHost!.node)}/healthz`, `${agentUrlOf(a!.node)}/healthz`, `${c.managerUrl}/healthz`].map(async (url) => {
      const r = await fetchFromPeer(url);
      assert.notEqual(r.code, 0, `a container reached ${url}: ${r.stdout}`);
      assert.equal(r.stdout, '', url);
    }));
  });

  it('a host that cannot join the cluster network is refused with the reason, and the agent exits', async () => {
    const join = (name: string, extra: string[]) => c.cli(['agent', '--manager', c.managerUrl, '--name', name, '--id-prefix', `${c.id}x-`, '--cgroup-parent', `ferry-${c.id}-x`, ...extra], { env: { FERRY_TOKEN: c.token } });
    const inside = await join('bad-underlay', ['--underlay-ip', '10.216.9.9']);
    assert.notEqual(inside.code, 0);
    assert.match(inside.stderr, /10\.216\.9\.9.*inside|inside.*10\.216\.9\.9/i, inside.stderr);
    const none = await join('no-underlay', ['--subnet', '10.216.77.0/24']);
    assert.notEqual(none.code, 0);
    assert.match(none.stderr, /underlay/i, none.stderr);
    const names = (await c.client.nodes.list()).map((n) => n.node.metadata.name);
    assert.ok(!names.includes('bad-underlay') && !names.includes('no-underlay'), names.join(' '));
  });

  it('20 concurrent creates get 20 distinct addresses', async () => {
    const names = Array.from({ length: 20 }, (_, i) => `many${i}`);
    await Promise.all(names.map((n, i) => c.ok(['run', '--name', n, '--node', c.hosts[i % 3]!.node, '--entrypoint', '/bin/sleep', 'sample', '--', '600'])));
    const ips = await Promise.all(names.map(ipOf));
    assert.equal(new Set(ips).size, 20, ips.join(' '));
    await Promise.all(names.map((n) => c.client.containers.remove(n, { wait: true, force: true })));
  });

  it('named networks keep their containers apart: same network across hosts talks, different networks do not', async () => {
    const [a, , cHost] = c.hosts;
    await c.ok(['network', 'create', 'blue']);
    await c.ok(['network', 'create', 'red']);
    const blue = await c.json<{ subnet: string }>(['network', 'inspect', 'blue']);
    await c.ok(['run', '--name', 'b1', '--node', a!.node, '--network', 'blue', 'sample']);
    await c.ok(['run', '--name', 'b2', '--node', cHost!.node, '--network', 'blue', 'sample']);
    await c.ok(['run', '--name', 'r1', '--node', a!.node, '--network', 'red', 'sample']);
    const [b1, r1, srv] = [await ipOf('b1'), await ipOf('r1'), await ipOf('srv')];
    assert.ok(b1.startsWith(blue.subnet.split('.').slice(0, 3).join('.')), `${b1} in ${blue.subnet}`);
    const fetch = (from: string, ip: string) => c.cli(['exec', from, '--', 'timeout', '3', 'wget', '-q', '-O', '-', `http://${ip}/count`]);
    const same = await until('blue on host C to reach blue on host A', async () => {
      const x = await fetch('b2', b1);
      return x.code === 0 ? x : undefined;
    }, 20_000);
    assert.match(same.stdout, /"count":\d+/);
    // Each refused fetch waits out its 3 s, so the four wait side by side.
    await Promise.all(([['b2', r1, 'blue → red'], ['b1', srv, 'blue → default, same host'], ['peer', b1, 'default → blue'], ['r1', b1, 'red → blue, same host']] as const).map(async ([from, ip, what]) => {
      const r = await fetch(from, ip);
      assert.notEqual(r.code, 0, `${what} got through: ${r.stdout}`);
    }));
    const refused = await c.cli(['network', 'rm', 'blue']);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /b1|b2/);
    await Promise.all(['b1', 'b2', 'r1'].map((n) => c.ok(['rm', '-f', n])));
    await c.ok(['network', 'rm', 'blue']);
    await c.ok(['network', 'rm', 'red']);
  });

  it('one client keeps one TCP connection while the container moves A→B→C→A (stop-copy, post-copy, pre-copy): same address, counter never resets', async () => {
    const srvIp = await ipOf('srv');
    const before = await c.client.containers.get('srv');
    // The client runs on host B's network namespace (not a container), talking to srv's address.
    const client = await lineClient(c, 1, srvIp, ECHO_PORT);
    let end: Awaited<ReturnType<typeof client.stop>> | undefined;
    try {
      // Each strategy once: stop-copy, post-copy (pages served from the source after the switch), pre-copy.
      for (const [to, strategy] of [[c.hosts[1]!, 'stop-copy'], [c.hosts[2]!, 'post-copy'], [c.hosts[0]!, 'pre-copy']] as const) {
        const m = await c.json<Migration>(['migrate', 'srv', '--to', to.node, '--strategy', strategy]);
        assert.equal(m.status.phase, 'Succeeded', JSON.stringify(m.status));
        assert.equal((await c.client.containers.get('srv')).container.placement?.node, to.node);
        // The status is the target agent's report: it follows within moments.
        const v = await until(`the status from ${to.node}`, async () => {
          const cv = await c.client.containers.get('srv');
          return cv.status?.node === to.node && cv.status.phase === 'running' ? cv : undefined;
        });
        assert.equal(v.status?.ip, srvIp, 'the address moved with the container');
        await client.flowing(20, `lines to flow again after the move to ${to.node}`);
        assert.deepEqual(client.errors(), []);
      }
      const after: ContainerView = await c.client.containers.get('srv');
      assert.equal(after.container.metadata.uid, before.container.metadata.uid);
    } finally {
      end = await client.stop();
    }
    const { code, done } = end;
    assert.ok(done, 'the client reported its end');
    assert.equal(done.error, null, `the connection broke: ${String(done.error)}`);
    assert.equal(code, 0);
    assert.ok((done.answers as number) >= 80, `answers: ${String(done.answers)}`);
  });
});
