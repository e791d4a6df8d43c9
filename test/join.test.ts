/**
 * Hosts joining with join tokens, on a real single-node Ferry: an admin makes a token, a second
 * agent (another simulated host on this machine) joins with `ferry agent --join <api> --token <T>`
 * and no cluster token, becomes Ready with the token's labels and runs a container; restarted after
 * the token is used up, it carries on with the credential it stored. A wrong token, no token or an
 * unreachable manager each fail at once with a clear message and a non-zero exit.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { startFerry, teardownFerry, isLive, runcList, type TestFerry, type AgentInfo } from './support/ferry.ts';
import { ensurePrerequisites, skipUnlessReady } from './support/prereq.ts';
import { freePort } from './support/net.ts';
import { until } from './support/wait.ts';
import type { JoinTokenCreated, JoinTokenView } from '../src/model/index.ts';

const TOOLS = ['runc', 'ip', 'iptables', '/opt/ferry/bin/criu'];

describe('hosts join with join tokens', { skip: skipUnlessReady(TOOLS) }, () => {
  let f: TestFerry;
  let api: string;
  before(async () => {
    ensurePrerequisites(TOOLS);
    f = await startFerry();
    api = f.client.endpoint.url;
  });
  after(async () => {
    if (!f) return;
    const left = await teardownFerry(f);
    assert.deepEqual(left, [], `teardown found leftovers: ${left.join('; ')}`);
  });

  const nodeNames = async (): Promise<string[]> => (await f.client.nodes.list()).map((n) => n.node.metadata.name);

  it('a wrong token, no token or an unreachable manager fail at once, clearly, and nothing joins', async () => {
    const name = `stray-${f.id}`;
    const agent = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
      f.cli(['agent', '--name', name, '--data-dir', join(f.home, 'agents', name), ...args]);
    const wrong = await agent('--join', api, '--token', `fjt.0123456789abcdef.${'A'.repeat(32)}`);
    assert.equal(wrong.code, 1, wrong.stderr);
    assert.match(wrong.stderr, new RegExp(`joining the cluster at ${api} as node ${name} failed: this join token is not valid for this cluster .*; ask an admin for a new one with \`ferry node token create\` \\(FERRY_ERR_JOIN_TOKEN_INVALID\\)`));
    const garbage = await agent('--join', api, '--token', 'hunter2');
    assert.notEqual(garbage.code, 0);
    assert.match(garbage.stderr, /not a join token: those look like fjt\.<id>\.<secret>/);
    const none = await agent('--join', api);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /--join needs --token <join token> the first time/);
    const both = await agent('--join', api, '--manager', api);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /--manager or --join is needed, not both/);
    const nowhere = await agent('--join', `http://127.0.0.1:${await freePort()}`, '--token', `fjt.0123456789abcdef.${'A'.repeat(32)}`);
    assert.equal(nowhere.code, 3, nowhere.stderr);
    assert.match(nowhere.stderr, /joining the cluster at http:\/\/127\.0\.0\.1:\d+ as node .* failed: cannot reach http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/);
    assert.ok(!(await nodeNames()).includes(name));
  });

  let b: AgentInfo;
  let token: JoinTokenCreated;

  it('ferry node token create prints the token once; ls never shows a secret', async () => {
    token = await f.json<JoinTokenCreated>(['node', 'token', 'create', '--ttl', '10m', '--label', 'joined=yes']);
    assert.match(token.token, /^fjt\.[0-9a-f]{16}\.\S+$/);
    assert.equal(token.uses, 1);
    const secret = token.token.split('.')[2]!;
    const ls = await f.ok(['node', 'token', 'ls']);
    assert.match(ls, new RegExp(`^${token.id}\\s+in (9|10)m\\s+1/1\\s+\\S+ ago\\s+joined=yes\\s+-$`, 'm'));
    assert.ok(!ls.includes(secret) && !(await f.ok(['-o', 'json', 'node', 'token', 'ls'])).includes(secret));
    const bad = await f.cli(['node', 'token', 'create', '--ttl', 'forever']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /invalid duration "forever": use a lifetime like 30m, 2h or 1d/);
  });

  it('a second host joins with the token alone, becomes Ready with its labels, and runs a container', async () => {
    b = await f.addAgent({ FERRY_TOKEN: '' }, { args: ['--join', api, '--token', token.token] });
    const nv = await f.client.nodes.get(b.node);
    assert.equal(nv.state, 'Ready');
    assert.equal(nv.node.metadata.labels.joined, 'yes', 'the token\'s label');
    const file = join(f.home, 'agents', b.node, 'credential.json');
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const stored = JSON.parse(await readFile(file, 'utf8')) as { managerUrl: string; node: string; credential: string };
    assert.deepEqual([stored.managerUrl, stored.node], [api, b.node]);
    assert.match(stored.credential, new RegExp(`^fac\\.${b.node}\\.`));
    const [v] = (await f.json<JoinTokenView[]>(['node', 'token', 'ls'])).filter((t) => t.id === token.id);
    assert.deepEqual([v?.usesLeft, v?.joined], [0, [b.node]]);

    // The node's credential is no admin token.
    const ps = await f.cli(['ps'], { env: { FERRY_API: api, FERRY_TOKEN: stored.credential } });
    assert.notEqual(ps.code, 0);
    assert.match(ps.stderr, new RegExp(`the credential of node "${b.node}" cannot call GET /v1/containers`));

    await f.ok(['run', '--node', b.node, '--name', 'x', 'sample']);
    const cv = await f.client.containers.get('x');
    assert.deepEqual([cv.status?.phase, cv.status?.node], ['running', b.node]);
    assert.equal(runcList(b.runcRoot).length, 1, 'it runs under the joined agent\'s runc root');
    // The manager reaches the joined agent's API (logs, exec) and the agents reach each other (a migration).
    assert.match(await f.ok(['exec', 'x', '--', 'echo', 'hi from the joined host']), /hi from the joined host/);
    assert.match(await f.ok(['logs', 'x']), /sample-app listening/);
    const m = await f.json<{ status: { phase: string } }>(['migrate', 'x', '--to', f.node]);
    assert.equal(m.status.phase, 'Succeeded', JSON.stringify(m.status));
    await until('x to leave the joined host (its frozen copy goes after the switch)', () => (runcList(b.runcRoot).length === 0 ? true : undefined));
    await f.ok(['rm', 'x']);
  });

  it('restarted after the token is used up, the agent carries on with its stored credential', async () => {
    const pid = f.pidOf(b.node)!;
    process.kill(pid, 'SIGTERM');
    await until(`agent ${b.node} (pid ${pid}) to stop`, () => (isLive(pid) ? undefined : true), 30_000);
    const again = await f.cli(['agent', '--join', api, '--token', token.token, '--name', `late-${f.id}`, '--data-dir', join(f.home, 'agents', `late-${f.id}`)]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, new RegExp(`join token ${token.id} is used up \\(it allowed 1 join\\(s\\)\\); ask an admin for a new one`));
    await f.restartAgentOf(b.node, { FERRY_TOKEN: '' });
    assert.equal((await f.client.nodes.get(b.node)).state, 'Ready');
    await f.ok(['run', '--node', b.node, '--name', 'y', 'sample']);
    await f.ok(['rm', 'y']);
  });
});
