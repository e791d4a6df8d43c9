/**
 * Services on a real node: the controller keeps the replica count through create, scale up and
 * down, a rolling update (every replica replaced, never fewer ready than wanted) and removal.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { useFerry } from './support/ferry.ts';
import { skipUnlessReady } from './support/prereq.ts';
import { until } from './support/wait.ts';
import type { ServiceView } from '../src/model/index.ts';

const TOOLS = ['runc', 'ip', 'iptables'];

describe('services on a real node', { skip: skipUnlessReady(TOOLS) }, () => {
  const h = useFerry(TOOLS);

  const running = async (): Promise<string[]> => (await h.f.client.containers.list())
    .filter((v) => v.container.metadata.name.startsWith('api-') && v.status?.phase === 'running' && !v.container.metadata.deleting)
    .map((v) => v.container.metadata.name).sort();

  it('create --wait runs the replicas; inspect says where each runs and why', async () => {
    const v = await h.f.json<ServiceView>(['service', 'create', 'api', '--image', 'sample', '--replicas', '2', '--http-host', 'api.local', '--drain', '1s', '--wait']);
    assert.equal(v.ready, 2);
    assert.equal((await running()).length, 2);
    const out = await h.f.ok(['service', 'inspect', 'api']);
    assert.match(out, /Replicas:\s+2 ready of 2 wanted/);
    assert.match(out, /api-[0-9a-f]{5}\s+\S+\s+\S+\s+running/, 'each replica with its node and phase');
    assert.match(await h.f.ok(['service', 'ls']), /^api\s+sample\s+2\/2\s+http:\/\/api\.local\//m);
  });

  it('scales up and down', async () => {
    assert.equal((await h.f.json<ServiceView>(['service', 'scale', 'api', '3', '--wait'])).ready, 3);
    assert.equal((await running()).length, 3);
    await h.f.ok(['service', 'scale', 'api', '1', '--wait']);
    await until('two replicas to be removed', async () => ((await running()).length === 1 ? true : undefined));
  });

  it('a changed template rolls every replica, never below the wanted ready count', async () => {
    await h.f.ok(['service', 'scale', 'api', '2', '--wait']);
    const before = await running();
    let minReady = Infinity;
    let stop = false;
    const watch = (async () => {
      while (!stop) {
        const v = await h.f.client.services.get('api');
        const ready = v.replicas.filter((r) => r.phase === 'running' && !r.retiring).length;
        minReady = Math.min(minReady, ready);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const v = await h.f.json<ServiceView>(['service', 'update', 'api', '-e', 'GREETING=v2', '--wait']);
    stop = true;
    await watch;
    assert.equal(v.ready, 2);
    assert.ok(v.replicas.every((r) => !before.includes(r.name)), 'every replica was replaced');
    assert.ok(minReady >= 2, `ready replicas never dropped below 2 (saw ${minReady})`);
  });

  it('refuses bad input with the reason and a non-zero exit', async () => {
    const neg = await h.f.cli(['service', 'scale', 'api', '-1']);
    assert.notEqual(neg.code, 0);
    const img = await h.f.cli(['service', 'create', 'web', '--image', 'nope']);
    assert.notEqual(img.code, 0);
    assert.match(img.stderr, /no image "nope"/);
    const clash = await h.f.cli(['service', 'create', 'web', '--image', 'sample', '--http-host', 'api.local']);
    assert.notEqual(clash.code, 0);
    assert.match(clash.stderr, /already routed to service "api"/);
    const bad = await h.f.cli(['service', 'create', 'web', '--image', 'sample', '--replicas', '-1']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /replicas must be a whole number/);
    const none = await h.f.cli(['service', 'ls', '-o', 'json']);
    assert.deepEqual((JSON.parse(none.stdout) as ServiceView[]).map((s) => s.service.metadata.name), ['api'], 'nothing was created');
  });

  it('rm --wait drains and removes every replica, then the service', async () => {
    await h.f.ok(['service', 'rm', 'api', '--wait']);
    assert.deepEqual(await running(), []);
    const gone = await h.f.cli(['service', 'inspect', 'api']);
    assert.notEqual(gone.code, 0);
    assert.match(gone.stderr, /no service named "api"/);
  });
});
