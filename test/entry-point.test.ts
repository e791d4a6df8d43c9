/**
 * The entry point on a simulated cluster (`ferry up --nodes 2` starts it on the first host): a
 * service reached by host name through HAProxy while, under continuous load, it scales up and down
 * (with drain), rolls to a new template, and its replicas live-migrate (the only replica too: its
 * requests are held at the entry point during the freeze). Every request is counted; none may fail.
 * A replica failing its health check leaves the rotation and comes back; a TCP service is reached
 * by its port.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { useCluster } from './support/cluster.ts';
import { MIGRATION_TOOLS } from './support/two-nodes.ts';
import { getOnce, startHttpLoad, type HttpLoad } from './support/http-load.ts';
import { until } from './support/wait.ts';
import type { Migration, ServiceView } from '../src/model/index.ts';

describe('the entry point on a simulated cluster', () => {
  const h = useCluster({ nodes: 2, tools: [...MIGRATION_TOOLS, 'haproxy'], lb: true });
  let load: HttpLoad | undefined;
  after(async () => { await load?.stop(); });
  const histories: string[] = [];
  const lbAddr = (): string => h.c.hosts[0]!.underlayIp;
  const replicas = async (): Promise<ServiceView['replicas']> => (await h.c.client.services.get('web')).replicas.filter((r) => !r.retiring);
  const assertNoFailures = (what: string): void => {
    const f = load!.failures();
    assert.equal(f.length, 0, `${what}: ${f.length} failed request(s): ${f.slice(0, 5).map((x) => `${new Date(x.at).toISOString()} ${x.error.slice(0, 80)}`).join('; ')}; migrations: ${histories.join(' | ')}`);
  };

  it('routes by host name to every replica', async () => {
    await h.c.ok(['service', 'create', 'web', '--image', 'sample', '--replicas', '2', '--http-host', 'web.local', '--health', 'http:/', '--drain', '2s', '--wait']);
    const seen = new Set<string>();
    await until('both replicas to answer through the entry point', async () => {
      const r = await getOnce(lbAddr(), 80, 'web.local').catch(() => undefined);
      if (r?.status === 200) seen.add((JSON.parse(r.body) as { hostname: string }).hostname);
      return seen.size === 2 ? true : undefined;
    });
    const other = await getOnce(lbAddr(), 80, 'nobody.local');
    assert.equal(other.status, 404, 'an unknown host name gets 404 from the entry point');
    load = startHttpLoad(lbAddr(), 80, 'web.local');
    await load.flowing(20);
  });

  it('scales 2 → 3 → 1 under load with zero failed requests', async () => {
    await h.c.ok(['service', 'scale', 'web', '3', '--wait']);
    await load!.flowing(20);
    await h.c.ok(['service', 'scale', 'web', '1', '--wait']);
    await until('the retired replicas to be removed', async () => ((await h.c.client.services.get('web')).replicas.length === 1 ? true : undefined));
    await load!.flowing(20);
    assertNoFailures('scaling');
  });

  it('rolls to a new template under load with zero failed requests', async () => {
    await h.c.ok(['service', 'scale', 'web', '2', '--wait']);
    const before = (await replicas()).map((r) => r.name);
    await h.c.ok(['service', 'update', 'web', '-e', 'GREETING=v2', '--wait']);
    const after = (await replicas()).map((r) => r.name);
    assert.ok(after.every((n) => !before.includes(n)), 'every replica was replaced');
    await load!.flowing(20);
    assertNoFailures('the rolling update');
  });

  it('live-migrates a replica, then the only replica (held at the entry point), with zero failed requests', async () => {
    const move = async (): Promise<Migration> => {
      const [r] = await replicas();
      const to = h.c.hosts.find((x) => x.node !== r!.node)!.node;
      const m = await h.c.json<Migration>(['migrate', r!.name, '--to', to]);
      histories.push(m.status.history.map((x) => `${x.at.slice(11, 23)} ${x.phase}`).join(', '));
      assert.equal(m.status.phase, 'Succeeded', JSON.stringify(m.status.history));
      await load!.flowing(10);
      return m;
    };
    await move();
    await h.c.ok(['service', 'scale', 'web', '1', '--wait']);
    await until('one replica left', async () => ((await h.c.client.services.get('web')).replicas.length === 1 ? true : undefined));
    const m = await move();
    assert.ok(m.status.history.some((x) => /entry points hold new requests/.test(x.message ?? '')), `the freeze waited for the hold: ${JSON.stringify(m.status.history)}`);
    const back = await move();
    assert.equal(back.status.phase, 'Succeeded');
    assertNoFailures('the migrations');
    const end = await load!.stop();
    assert.ok(end.ok > 100, `requests kept flowing (${end.ok} answered)`);
  });

  it('a replica that fails its health check leaves the rotation and comes back', async () => {
    await h.c.ok(['service', 'scale', 'web', '2', '--wait']);
    const [sick, well] = await replicas();
    const answers = async (n: number): Promise<Set<string>> => {
      const who = new Set<string>();
      for (let i = 0; i < n; i++) {
        const r = await getOnce(lbAddr(), 80, 'web.local', '/', 2000).catch(() => undefined);
        who.add(r?.status === 200 ? (JSON.parse(r.body) as { hostname: string }).hostname : 'failed');
      }
      return who;
    };
    // SIGSTOP from the host (init ignores it from inside its own namespace): it stays, but answers nothing.
    const pid = (await h.c.client.containers.get(sick!.name)).status!.pid;
    assert.ok(pid > 1, `${sick!.name} has a host pid`);
    process.kill(pid, 'SIGSTOP');
    await until(`${sick!.name} to leave the rotation`, async () => {
      const who = await answers(6);
      return who.size === 1 && who.has(well!.name) ? true : undefined;
    }, 60_000);
    process.kill(pid, 'SIGCONT');
    await until(`${sick!.name} to come back`, async () => ((await answers(6)).has(sick!.name) ? true : undefined), 60_000);
  });

  it('reaches a TCP service by its port', async () => {
    await h.c.ok(['service', 'create', 'raw', '--image', 'sample', '--tcp-port', '30080', '--health', 'tcp', '--wait']);
    const r = await until('the TCP service to answer', async () => {
      const x = await getOnce(lbAddr(), 30080, 'anything').catch(() => undefined);
      return x?.status === 200 ? x : undefined;
    });
    assert.match(r.body, /"hostname":"raw-[0-9a-f]{5}"/);
    const clash = await h.c.cli(['service', 'create', 'raw2', '--image', 'sample', '--tcp-port', '30080']);
    assert.notEqual(clash.code, 0);
    assert.match(clash.stderr, /port 30080 is already used by service "raw"/);
    await h.c.ok(['service', 'rm', 'raw', 'web', '--wait']);
  });
});
