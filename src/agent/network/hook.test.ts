import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import { attachToBridge, destroyBridge, ensureBridge, linkInfo } from './bridge.ts';
import { installHook, poststopHook, prestartHook, vethName } from './hook.ts';
import type { HookMode } from './hook.ts';
import { intToIp, macFromIp, parseSubnet } from './ipv4.ts';
import type { Subnet } from './ipv4.ts';
import { freeSubnet, ipJson, killChild, linkExists, requireHost, runPrefix, sleeperInNewNetns } from './testkit.ts';
import type { Hook } from '../runtime/types.ts';

interface Env {
  prefix: string;
  bridge: string;
  subnet: Subnet;
  hookPath: string;
}

/** A bridge + an installed hook, removed after the test. */
async function setup(t: TestContext): Promise<Env> {
  const prefix = runPrefix();
  const subnet = parseSubnet(freeSubnet());
  const dir = await mkdtemp(join(tmpdir(), `ferry-hook-${prefix}-`));
  t.after(async () => {
    await destroyBridge(prefix);
    await rm(dir, { recursive: true, force: true });
  });
  await ensureBridge({ name: prefix, subnet, outboundNat: false });
  return { prefix, bridge: prefix, subnet, hookPath: await installHook(dir) };
}

function params(env: Env, id: string, n: number, mode: HookMode) {
  const ip = intToIp(env.subnet.firstHost + n);
  return { mode, address: `${ip}/24`, gateway: env.subnet.gateway, gatewayMac: macFromIp(env.subnet.gateway), mac: macFromIp(ip), veth: vethName(`${env.prefix}-${id}`), bridge: env.bridge, ip };
}

/** Runs a hook the way runc does: args[0] is argv[0], the state JSON on stdin, only the hook's env. */
function runHook(hook: Hook, stdin: string, wrap: string[] = []) {
  const args = (hook.args ?? []).slice(1);
  const r = spawnSync(wrap[0] ?? hook.path, wrap.length > 0 ? [...wrap.slice(1), hook.path, ...args] : args, { input: stdin, env: Object.fromEntries((hook.env ?? []).map((e) => e.split('=', 2) as [string, string])), encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr, stdout: r.stdout };
}

function state(pid: number): string {
  return JSON.stringify({ ociVersion: '1.0.2-dev', id: 'x', status: 'creating', pid, bundle: '/nowhere', annotations: { note: '{"pid":1}' } });
}

/** What the container side looks like, read from inside its namespace. */
function inside(pid: number) {
  const eth0 = ipJson<Array<{ address: string; operstate: string; addr_info: Array<{ family: string; local: string; prefixlen: number }> }>>(pid, ['addr', 'show', 'dev', 'eth0'])[0];
  const lo = ipJson<Array<{ flags: string[] }>>(pid, ['link', 'show', 'dev', 'lo'])[0];
  const routes = ipJson<Array<{ dst: string; gateway?: string; dev: string }>>(pid, ['route', 'show']);
  const neigh = ipJson<Array<{ dst: string; lladdr: string; state: string[] }>>(pid, ['neigh', 'show', 'dev', 'eth0']);
  return {
    mac: eth0?.address,
    addrs: eth0?.addr_info.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`),
    loUp: lo?.flags.includes('UP'),
    defaultVia: routes.find((r) => r.dst === 'default')?.gateway,
    neigh: neigh.map((n) => `${n.dst} ${n.lladdr} ${n.state.join(',')}`),
  };
}

function ping(ip: string): boolean {
  return spawnSync('busybox', ['ping', '-c', '1', '-W', '2', ip], { stdio: 'ignore' }).status === 0;
}

test('mode=up plumbs eth0 (address, MAC, lo, default route, permanent gateway entry) and puts the host end on the bridge', async (t) => {
  if (!requireHost(t, ['ip', 'iptables', 'unshare', 'nsenter', 'busybox'])) return;
  const env = await setup(t);
  const sleeper = await sleeperInNewNetns();
  t.after(() => killChild(sleeper));
  const p = params(env, 'a', 0, 'up');
  // A leftover link of the same name (a crashed start) must not stop the hook.
  execFileSync('ip', ['link', 'add', 'name', p.veth, 'type', 'veth', 'peer', 'name', `${p.veth}x`]);
  t.after(() => {
    if (linkExists(p.veth)) execFileSync('ip', ['link', 'del', 'dev', p.veth]);
  });

  const r = runHook(prestartHook(env.hookPath, p), state(sleeper.pid));
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(inside(sleeper.pid), {
    mac: p.mac,
    addrs: [p.address],
    loUp: true,
    defaultVia: env.subnet.gateway,
    neigh: [`${env.subnet.gateway} ${p.gatewayMac} PERMANENT`],
  });
  assert.deepEqual(await linkInfo(p.veth), { kind: 'veth', up: true, master: env.bridge });
  assert.equal(linkExists(`${p.veth}x`), false, 'the stale pair was removed');
  assert.ok(ping(p.ip), 'the host reaches the container');

  // poststop removes the host end; a second run finds nothing and still succeeds.
  assert.equal(runHook(poststopHook(env.hookPath, p.veth), state(sleeper.pid)).status, 0);
  assert.equal(linkExists(p.veth), false);
  assert.equal(runHook(poststopHook(env.hookPath, p.veth), state(sleeper.pid)).status, 0);
});

test('mode=down configures the namespace but leaves the host end down and off the bridge until bringUp', async (t) => {
  if (!requireHost(t, ['ip', 'iptables', 'unshare', 'nsenter', 'busybox'])) return;
  const env = await setup(t);
  const sleeper = await sleeperInNewNetns();
  t.after(() => killChild(sleeper));
  const p = params(env, 'b', 1, 'down');
  const r = runHook(prestartHook(env.hookPath, p), state(sleeper.pid));
  assert.equal(r.status, 0, r.stderr);
  const view = inside(sleeper.pid);
  assert.equal(view.defaultVia, env.subnet.gateway);
  assert.deepEqual(view.neigh, [`${env.subnet.gateway} ${p.gatewayMac} PERMANENT`]);
  assert.deepEqual(await linkInfo(p.veth), { kind: 'veth', up: false, master: undefined });

  await attachToBridge(p.veth, env.bridge);
  assert.deepEqual(await linkInfo(p.veth), { kind: 'veth', up: true, master: env.bridge });
  assert.ok(ping(p.ip), 'reachable after bringUp');
});

test('the hook needs no /run/netns and leaves nothing in /run', async (t) => {
  if (!requireHost(t, ['ip', 'iptables', 'unshare', 'nsenter', 'busybox'])) return;
  const env = await setup(t);
  const sleeper = await sleeperInNewNetns();
  t.after(() => killChild(sleeper));
  const p = params(env, 'c', 2, 'up');
  const hook = prestartHook(env.hookPath, p);
  // A private mount namespace with an empty /run: the host's /run/netns is untouched. The hook enters
  // the namespace through /proc/PID/ns/net; it names nothing under /run.
  const script = `mount -t tmpfs ferry-test /run && "$0" "$@" && echo "left:$(ls -A /run)"`;
  const r = runHook(hook, state(sleeper.pid), ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', script]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'left:');
  assert.deepEqual(inside(sleeper.pid).addrs, [p.address]);
  assert.ok(ping(p.ip));
});

test('bad input fails with a message and leaves no link behind', async (t) => {
  if (!requireHost(t, ['ip', 'iptables', 'unshare', 'nsenter'])) return;
  const env = await setup(t);
  const p = params(env, 'd', 3, 'up');
  const hook = prestartHook(env.hookPath, p);
  let r = runHook(hook, '{"ociVersion":"1.0.2","id":"x","annotations":{"a":"{\\"pid\\":1}"}}');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /no pid in the container state/);
  r = runHook(hook, state(2 ** 22 + 12345));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /process \d+ is gone/);
  r = runHook({ ...hook, args: [env.hookPath, 'mode=sideways', `veth=${p.veth}`] }, state(1));
  assert.match(r.stderr, /mode must be up, down, remove, refuse, isolate or connect/);
  r = runHook({ ...hook, args: [env.hookPath, 'mode=up', `veth=${p.veth}`] }, state(1));
  assert.match(r.stderr, /missing one of/);
  assert.equal(linkExists(p.veth), false);
});
