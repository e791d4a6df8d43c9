/**
 * Service discovery inside the cluster, on two simulated hosts: containers resolve a service's name
 * (and other containers' names) through the DNS each agent answers on its networks' gateways, reach
 * the service by name on either host, see scaling within seconds, get nothing for unknown names and
 * nothing from another network — and keep all of it after moving to another host.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { useCluster, type TestCluster } from './support/cluster.ts';
import { skipUnlessReady } from './support/prereq.ts';
import { until } from './support/wait.ts';
import type { ServiceView } from '../src/model/index.ts';

const TOOLS = ['runc', 'ip', 'iptables', 'ebtables', 'bridge', 'nsenter', '/usr/bin/busybox', '/opt/ferry/bin/criu'];

/** The IPv4 addresses busybox nslookup printed for the name (its Server: block excluded). */
function answered(out: string): string[] {
  const after = out.split(/^Name:/m).slice(1).join('\n');
  return [...after.matchAll(/^Address(?: \d+)?:\s*(\d+\.\d+\.\d+\.\d+)\s*$/gm)].map((m) => m[1]!).sort();
}

describe('service discovery by name on two simulated hosts', { skip: skipUnlessReady(TOOLS) }, () => {
  const cluster = useCluster({ nodes: 2, tools: TOOLS });
  let c: TestCluster;
  before(() => { c = cluster.c; });

  /** Runs `args` in `container` through the API, as `ferry exec` does (without a CLI start per call: polls call it often). */
  const run = async (container: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
    const out = { code: -1, stdout: '', stderr: '' };
    for await (const f of await c.client.containers.exec(container, { args })) {
      if ('stream' in f) out[f.stream] += Buffer.from(f.data, 'base64').toString();
      else if ('exitCode' in f) out.code = f.exitCode;
      else throw new Error(f.error.message);
    }
    return out;
  };
  /** Runs busybox nslookup in `container` (A records only). */
  const nslookup = (container: string, name: string, server?: string) => run(container, ['timeout', '5', 'nslookup', '-type=a', name, ...(server ? [server] : [])]);
  /** Fetches http://<name>/ in `container` by name (busybox wget: the libc resolver, resolv.conf's search list). */
  const fetchByName = (container: string, name: string) => run(container, ['timeout', '5', 'wget', '-q', '-O', '-', `http://${name}/`]);
  const replicas = async (): Promise<Array<{ name: string; ip: string; node: string }>> => {
    const v = await c.client.services.get('web');
    return v.replicas.filter((r) => r.phase === 'running' && !r.retiring && r.ip && r.node).map((r) => ({ name: r.name, ip: r.ip!, node: r.node! }));
  };

  it('a container resolves a service to its running replicas and reaches one on either host by name', async () => {
    const v = await c.json<ServiceView>(['service', 'create', 'web', '--image', 'sample', '--replicas', '2', '--wait']);
    assert.equal(v.ready, 2);
    await c.ok(['run', '--name', 'cli', '--node', c.hosts[1]!.node, 'sample']);
    const web = await replicas();
    assert.equal(web.length, 2);
    assert.deepEqual(new Set(web.map((r) => r.node)).size, 2, `the replicas run on both hosts: ${JSON.stringify(web)}`);
    const want = web.map((r) => r.ip).sort();

    const resolv = await run('cli', ['cat', '/etc/resolv.conf']);
    const gateway = (await c.client.network.get()).gateway;
    assert.match(resolv.stdout, new RegExp(`^nameserver ${gateway.replace(/\./g, '\\.')}$`, 'm'));
    assert.match(resolv.stdout, /^search ferry$/m);

    await until('nslookup web to list both replicas', async () => {
      const r = await nslookup('cli', 'web');
      return r.code === 0 && answered(r.stdout).join() === want.join() ? true : undefined;
    });
    // The way a user would ask, through the CLI.
    const out = await c.ok(['exec', 'cli', '--', 'nslookup', '-type=a', 'web']);
    assert.deepEqual(answered(out), want);
    assert.match(out, /^Name:\s+web(\.ferry)?$/m);
    assert.deepEqual(answered((await nslookup('cli', 'web.ferry')).stdout), want);
    // A container's own name resolves too (here a replica's, from the other host).
    assert.deepEqual(answered((await nslookup('cli', web[0]!.name)).stdout), [web[0]!.ip]);

    // By name through the resolver of the libc (busybox wget): the answers are shuffled, so both replicas serve in time.
    const seen = new Set<string>();
    await until('wget http://web/ to be answered by both replicas', async () => {
      const r = await fetchByName('cli', 'web');
      if (r.code === 0) seen.add((JSON.parse(r.stdout) as { hostname: string }).hostname);
      return seen.size === 2 ? true : undefined;
    });
    assert.deepEqual([...seen].sort(), web.map((r) => r.name).sort());
  });

  it('the name follows scaling: a removed replica leaves the answer within seconds', async () => {
    await c.ok(['service', 'scale', 'web', '1', '--wait']);
    const left = await until('one replica left', async () => {
      const r = await replicas();
      return r.length === 1 ? r : undefined;
    });
    await until('nslookup web to give the remaining replica only', async () => {
      const r = await nslookup('cli', 'web');
      return r.code === 0 && answered(r.stdout).join() === left[0]!.ip ? true : undefined;
    });
    const r = await fetchByName('cli', 'web');
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { hostname: string }).hostname, left[0]!.name);
  });

  it('an unknown name fails, and names outside the cluster are refused (never forwarded)', async () => {
    const unknown = await nslookup('cli', 'nope');
    assert.deepEqual(answered(unknown.stdout), []);
    assert.match(unknown.stdout + unknown.stderr, /NXDOMAIN|can't find/i);
    const outside = await nslookup('cli', 'example.com');
    assert.deepEqual(answered(outside.stdout), []);
    assert.match(outside.stdout + outside.stderr, /REFUSED|can't find/i);
    const wget = await fetchByName('cli', 'nope');
    assert.notEqual(wget.code, 0);
    assert.equal(wget.stdout, '');
  });

  it('a container on another network cannot resolve web, not even at the default network\'s gateway', async () => {
    await c.ok(['network', 'create', 'other']);
    await c.ok(['run', '--name', 'far', '--network', 'other', '--node', c.hosts[1]!.node, 'sample']);
    const farIp = (await c.client.containers.get('far')).status!.ip!;
    // Its own network's names resolve (once the listener on that network's new bridge is up).
    await until('far to resolve its own name', async () => {
      const r = await nslookup('far', 'far');
      return answered(r.stdout).join() === farIp ? true : undefined;
    });
    const web = await nslookup('far', 'web');
    assert.deepEqual(answered(web.stdout), [], web.stdout);
    assert.deepEqual(answered((await nslookup('far', 'cli')).stdout), []);
    // Asking the default network's gateway directly (the host answers it) is refused: wrong subnet.
    const gateway = (await c.client.network.get()).gateway;
    const direct = await nslookup('far', 'web', gateway);
    assert.deepEqual(answered(direct.stdout), [], direct.stdout);
    assert.match(direct.stdout + direct.stderr, /REFUSED|can't find|timed out|no servers/i);
    await c.ok(['rm', '-f', 'far']);
  });

  it('after moving to the other host, the client keeps its resolv.conf and resolves by name there', async () => {
    await c.ok(['migrate', 'cli', '--to', c.hosts[0]!.node]);
    assert.equal((await c.client.containers.get('cli')).container.placement?.node, c.hosts[0]!.node);
    const resolv = await run('cli', ['cat', '/etc/resolv.conf']);
    assert.match(resolv.stdout, /^search ferry$/m);
    const left = await replicas();
    await until('cli on its new host to resolve web', async () => {
      const r = await nslookup('cli', 'web');
      return answered(r.stdout).join() === left.map((x) => x.ip).join() ? true : undefined;
    });
    const r = await fetchByName('cli', 'web.ferry');
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { hostname: string }).hostname, left[0]!.name);
  });
});
