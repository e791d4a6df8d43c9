/**
 * The node network against real runc: busybox containers in their own user + network namespaces
 * (uid 0 → 100000), plumbed by the prestart hook, reached from the host and through a published port.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, readFile as readFileAsync, readdir, rm, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isFerryError } from '../../errors/index.ts';
import { taggedRules } from './bridge.ts';
import { bringUp, createNodeNetwork } from './index.ts';
import type { Attachment, LocalNodeNetwork } from './index.ts';
import { exchange, freeSubnet, httpGet, ipJson, linkExists, requireHost, runPrefix } from './testkit.ts';

const HOST_ID = 100000;
/** CRIU ≥ 4.2 wrapper (see the live-migration notes); only the restore test needs it. */
const CRIU = '/opt/ferry/bin/criu';

function runc(root: string, args: string[]): string {
  const r = spawnSync('runc', ['--root', root, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) throw new Error(`runc ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

/**
 * `runc <command> -d`: the container inherits runc's stdio, so it gets /dev/null (no pipe we would
 * wait on, nothing CRIU cannot dump) and runc's own errors go to a log file.
 */
function runcDetached(root: string, args: string[], logFile: string): void {
  const r = spawnSync('runc', ['--root', root, '--log', logFile, ...args], { stdio: 'ignore' });
  if (r.status !== 0) throw new Error(`runc ${args.join(' ')} failed: ${existsSync(logFile) ? readFileSync(logFile, 'utf8') : `exit ${r.status}`}`);
}

/** Starts a container from its bundle in the background. */
function runcRunDetached(root: string, bundle: string, id: string, logFile: string): void {
  runcDetached(root, ['run', '-d', '--bundle', bundle, id], logFile);
}

/** A busybox bundle whose httpd on :8080 serves `hello from ID`, with the attachment's hooks. */
async function makeBundle(dir: string, id: string, att: Attachment, prefix: string): Promise<string> {
  const bundle = join(dir, 'bundles', id);
  const rootfs = join(bundle, 'rootfs');
  for (const d of ['bin', 'www', 'proc', 'sys', 'dev', 'tmp']) await mkdir(join(rootfs, d), { recursive: true });
  await copyFile('/bin/busybox', join(rootfs, 'bin/busybox'));
  await chmod(join(rootfs, 'bin/busybox'), 0o755);
  await writeFile(join(rootfs, 'www/index.html'), `hello from ${id}`);
  execFileSync('chown', ['-R', `${HOST_ID}:${HOST_ID}`, rootfs]);
  await chmod(join(dir, 'bundles'), 0o755);
  await chmod(bundle, 0o755);
  const caps = ['CAP_KILL', 'CAP_NET_BIND_SERVICE'];
  const config = {
    ociVersion: '1.0.2-dev',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: ['/bin/busybox', 'httpd', '-f', '-p', '8080', '-h', '/www'],
      env: ['PATH=/bin'],
      cwd: '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: true },
    hostname: id,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777'] },
    ],
    hooks: att.hooks,
    linux: {
      uidMappings: [{ containerID: 0, hostID: HOST_ID, size: 65536 }],
      gidMappings: [{ containerID: 0, hostID: HOST_ID, size: 65536 }],
      // runc makes every namespace itself, the network one included: the hook plumbs it.
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'user' }, { type: 'network' }],
      cgroupsPath: `/ferry-nettest-${prefix}-${id}`,
      maskedPaths: ['/proc/kcore', '/proc/keys', '/proc/timer_list', '/sys/firmware'],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
  await writeFile(join(bundle, 'config.json'), JSON.stringify(config, null, 2));
  return bundle;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as { port: number };
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Retries an HTTP GET until httpd in the fresh container listens. */
async function getWhenUp(host: string, port: number): Promise<{ status: number; body: string }> {
  let last: unknown;
  for (let i = 0; i < 100; i++) {
    try {
      return await httpGet(host, port, '/index.html');
    } catch (e) {
      last = e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw last;
}

test('runc containers get plumbed by the hook, answer on their address and on a published port; everything is removed after', async (t) => {
  if (!requireHost(t, ['ip', 'iptables', 'runc', 'nsenter', 'chown'])) return;
  if (!existsSync('/bin/busybox')) {
    if (process.env.CI === 'true') assert.fail('needs /bin/busybox (busybox-static)');
    t.skip('needs /bin/busybox');
    return;
  }
  const prefix = runPrefix();
  const dir = await mkdtemp(join(tmpdir(), `ferry-net-${prefix}-`));
  await chmod(dir, 0o755); // the container's root (host uid 100000) must traverse to its rootfs
  const stateDir = join(dir, 'state');
  const root = join(dir, 'runc');
  const options = { stateDir, bridge: prefix, subnet: freeSubnet(), log: (m: string) => t.diagnostic(m) };
  const ids = { a: `${prefix}-a`, b: `${prefix}-b` };
  const networks: LocalNodeNetwork[] = [];
  t.after(async () => {
    // Undo in reverse, each step on its own so one failure does not leave the rest behind.
    for (const id of Object.values(ids)) spawnSync('runc', ['--root', root, 'delete', '-f', id], { stdio: 'ignore' });
    for (const n of networks) await n.destroy().catch((e: unknown) => t.diagnostic(`destroy: ${String(e)}`));
    await rm(dir, { recursive: true, force: true });
  });

  const net = createNodeNetwork(options);
  networks.push(net);
  await net.init();
  await net.init(); // idempotent

  // Container A: a normal start (mode=up).
  const a = await net.attach(ids.a);
  assert.deepEqual(await net.attach(ids.a), a, 'attach is idempotent per container');
  runcRunDetached(root, await makeBundle(dir, ids.a, a, prefix), ids.a, join(dir, 'a.log'));
  const pidA = (JSON.parse(runc(root, ['state', ids.a])) as { pid: number }).pid;

  const [eth0] = ipJson<Array<{ address: string; addr_info: Array<{ family: string; local: string; prefixlen: number }> }>>(pidA, ['addr', 'show', 'dev', 'eth0']);
  assert.equal(eth0?.address, a.mac);
  assert.deepEqual(eth0?.addr_info.filter((x) => x.family === 'inet').map((x) => `${x.local}/${x.prefixlen}`), [`${a.ip}/${a.prefixLength}`]);
  const routes = ipJson<Array<{ dst: string; gateway?: string }>>(pidA, ['route', 'show']);
  assert.equal(routes.find((r) => r.dst === 'default')?.gateway, a.gateway);
  const neigh = ipJson<Array<{ dst: string; lladdr: string; state: string[] }>>(pidA, ['neigh', 'show', 'dev', 'eth0']);
  const gwEntry = neigh.find((n) => n.dst === a.gateway);
  assert.deepEqual(gwEntry?.state, ['PERMANENT']);
  const [bridgeLink] = ipJson<Array<{ address: string }>>(undefined, ['link', 'show', 'dev', prefix]);
  assert.equal(gwEntry?.lladdr, bridgeLink?.address, 'the permanent entry names the bridge MAC');
  const [vethA] = ipJson<Array<{ master?: string; flags: string[] }>>(undefined, ['link', 'show', 'dev', a.hostVeth]);
  assert.equal(vethA?.master, prefix);
  assert.ok(vethA?.flags.includes('UP'));

  // The host reaches the container on its own address.
  assert.deepEqual(await getWhenUp(a.ip, 8080), { status: 200, body: `hello from ${ids.a}` });

  // A published port on loopback reaches the container's port.
  const hostPort = await freePort();
  await net.publish(ids.a, a.ip, [{ hostIp: '127.0.0.1', hostPort, containerPort: 8080, protocol: 'tcp' }]);
  assert.deepEqual(await httpGet('127.0.0.1', hostPort, '/index.html'), { status: 200, body: `hello from ${ids.a}` });
  assert.equal((await net.portStats(ids.a))[0]?.total, 1);

  // Container B: started as a migration target would be (mode=down), unreachable until bringUp.
  const b = await net.attach(ids.b, { mode: 'down' });
  assert.notEqual(b.ip, a.ip);
  runcRunDetached(root, await makeBundle(dir, ids.b, b, prefix), ids.b, join(dir, 'b.log'));
  const pidB = (JSON.parse(runc(root, ['state', ids.b])) as { pid: number }).pid;
  const [vethB] = ipJson<Array<{ master?: string; flags: string[] }>>(undefined, ['link', 'show', 'dev', b.hostVeth]);
  assert.equal(vethB?.master, undefined, 'mode=down: not on the bridge');
  assert.ok(!vethB?.flags.includes('UP'), 'mode=down: host end down');
  assert.deepEqual(ipJson<Array<{ state: string[] }>>(pidB, ['neigh', 'show', 'dev', 'eth0', b.gateway])[0]?.state, ['PERMANENT']);
  await bringUp(b);
  const [vethBUp] = ipJson<Array<{ master?: string; flags: string[] }>>(undefined, ['link', 'show', 'dev', b.hostVeth]);
  assert.equal(vethBUp?.master, prefix);
  assert.deepEqual(await getWhenUp(b.ip, 8080), { status: 200, body: `hello from ${ids.b}` });
  // Container to container across the bridge.
  assert.equal(runc(root, ['exec', ids.b, '/bin/busybox', 'wget', '-q', '-O', '-', `http://${a.ip}:8080/index.html`]), `hello from ${ids.a}`);

  // A migration source about to freeze: nothing reaches B any more, while what B sends still leaves.
  await net.refuseInbound(ids.b);
  await assert.rejects(exchange(b.ip, 8080, 'GET / HTTP/1.0\r\n\r\n', 1500), /no answer/);
  const sentByB = (): number => ipJson<Array<{ stats64: { rx: { packets: number } } }>>(undefined, ['-s', 'link', 'show', 'dev', b.hostVeth])[0]!.stats64.rx.packets;
  const before = sentByB();
  // A connection attempt: its SYN leaves (the SYN-ACK would not come back), then it gives up.
  spawnSync('runc', ['--root', root, 'exec', ids.b, '/bin/busybox', 'timeout', '1', '/bin/busybox', 'nc', '-w', '1', a.ip, '8080'], { stdio: 'ignore' });
  const after = sentByB();
  assert.ok(after > before, `B's connection attempt left its port (${before} → ${after} frames), though no answer came back`);
  // Cut off altogether, then connected again: the port is an ordinary bridge port once more.
  assert.equal(await net.isolate(ids.b), true);
  const [vethBCut] = ipJson<Array<{ master?: string; flags: string[] }>>(undefined, ['link', 'show', 'dev', b.hostVeth]);
  assert.ok(vethBCut !== undefined && vethBCut.master === undefined && !vethBCut.flags.includes('UP'), 'isolated: off the bridge and down');
  // Nothing to take down: said so (the dump then keeps CRIU's own network lock).
  assert.equal(await net.isolate(`${prefix}-none`), false);
  await net.bringUp(b);
  const [vethBBack] = ipJson<Array<{ master?: string; flags: string[] }>>(undefined, ['link', 'show', 'dev', b.hostVeth]);
  assert.ok(vethBBack?.master === prefix && vethBBack.flags.includes('UP'), 'connected: on the bridge and up');
  assert.deepEqual(await getWhenUp(b.ip, 8080), { status: 200, body: `hello from ${ids.b}` });

  // The same host port for B is taken by A.
  await assert.rejects(net.publish(ids.b, b.ip, [{ hostIp: '127.0.0.1', hostPort, containerPort: 8080, protocol: 'tcp' }]), (e: unknown) => {
    assert.ok(isFerryError(e, 'NET_PORT_IN_USE'));
    assert.match(e.message, new RegExp(`in use by container ${ids.a}`));
    return true;
  });

  // Agent restart: a new instance re-reads the leases and the port table; re-publishing is idempotent.
  await net.close();
  const net2 = createNodeNetwork(options);
  networks.push(net2);
  await net2.init();
  assert.deepEqual((await net2.list()).map((x) => [x.containerId, x.ip]).sort(), [[ids.a, a.ip], [ids.b, b.ip]].sort());
  assert.deepEqual(await net2.attach(ids.a), a);
  for (const { containerId, ip, ports } of await net2.published()) await net2.publish(containerId, ip, [...ports]);
  await net2.publish(ids.a, a.ip, [{ hostIp: '127.0.0.1', hostPort, containerPort: 8080, protocol: 'tcp' }]);
  assert.deepEqual(await httpGet('127.0.0.1', hostPort, '/index.html'), { status: 200, body: `hello from ${ids.a}` });
  assert.deepEqual(await getWhenUp(b.ip, 8080), { status: 200, body: `hello from ${ids.b}` }, 'init on a live bridge did not disturb B');

  // A goes away: runc's poststop hook and detach leave no veth, no address, no port.
  runc(root, ['delete', '-f', ids.a]);
  assert.equal(linkExists(a.hostVeth), false);
  await net2.detach(ids.a);
  await net2.detach(ids.a); // idempotent
  assert.deepEqual((await net2.list()).map((x) => x.containerId), [ids.b]);
  await assert.rejects(httpGet('127.0.0.1', hostPort, '/'), /ECONNREFUSED/);
  assert.deepEqual(await net2.published(), []);

  // destroy takes the bridge, B's veth, the rules and the state files with it.
  await net2.destroy();
  assert.equal(linkExists(prefix), false);
  assert.equal(linkExists(b.hostVeth), false);
  assert.deepEqual(await taggedRules('filter', 'FORWARD', `ferry:${prefix}`), []);
  assert.equal(existsSync(stateDir), false);
  runc(root, ['delete', '-f', ids.b]);
  assert.deepEqual(await readdir(root).catch(() => []), []);
  const leftovers = execFileSync('ip', ['-br', 'link'], { encoding: 'utf8' }).split('\n').filter((l) => l.startsWith(prefix) || l.startsWith(a.hostVeth) || l.startsWith(b.hostVeth));
  assert.deepEqual(leftovers, []);
  assert.ok(!execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).includes(prefix));
});

test('the hook runs again at runc restore: mode=down keeps the restored container unreachable until bringUp, with its address and MAC', async (t) => {
  if (!requireHost(t, ['ip', 'iptables', 'runc', 'nsenter', 'chown'])) return;
  if (!existsSync('/bin/busybox') || !existsSync(CRIU)) {
    if (process.env.CI === 'true') assert.fail(`needs /bin/busybox and ${CRIU}`);
    t.skip(`needs /bin/busybox and ${CRIU}`);
    return;
  }
  const prefix = runPrefix();
  const dir = await mkdtemp(join(tmpdir(), `ferry-net-${prefix}-`));
  await chmod(dir, 0o755);
  const root = join(dir, 'runc');
  const net = createNodeNetwork({ stateDir: join(dir, 'state'), bridge: prefix, subnet: freeSubnet() });
  const id = `${prefix}-m`;
  const restoredId = `${prefix}-r`;
  t.after(async () => {
    for (const x of [id, restoredId]) spawnSync('runc', ['--root', root, 'delete', '-f', x], { stdio: 'ignore' });
    await net.destroy().catch((e: unknown) => t.diagnostic(`destroy: ${String(e)}`));
    await rm(dir, { recursive: true, force: true });
  });
  await net.init();
  const att = await net.attach(id);
  const bundle = await makeBundle(dir, id, att, prefix);
  runcRunDetached(root, bundle, id, join(dir, 'm.log'));
  assert.deepEqual(await getWhenUp(att.ip, 8080), { status: 200, body: `hello from ${id}` });

  // Checkpoint (the container stops and its namespace with its veth goes away) …
  const images = join(dir, 'images');
  await mkdir(images);
  try {
    runc(root, ['--criu', CRIU, 'checkpoint', '--image-path', images, '--work-path', images, id]);
  } catch (e) {
    const log = await readFileAsync(join(images, 'dump.log'), 'utf8').catch(() => '');
    throw new Error(`${(e as Error).message}\n${log.split('\n').filter((l) => /Error|error|fail/.test(l)).slice(-15).join('\n')}`, { cause: e });
  }
  runc(root, ['delete', '-f', id]);
  assert.equal(linkExists(att.hostVeth), false);
  // … and restore as a migration target would: same identity, hook in mode=down.
  execFileSync('chown', ['-R', `${HOST_ID}:${HOST_ID}`, images]);
  const target = await net.attach(id, { mode: 'down' });
  assert.equal(target.ip, att.ip);
  await writeFile(join(bundle, 'config.json'), (await readFileAsync(join(bundle, 'config.json'), 'utf8')).replace('"mode=up"', '"mode=down"'));
  runcDetached(root, ['--criu', CRIU, 'restore', '-d', '--image-path', images, '--work-path', images, '--bundle', bundle, restoredId], join(dir, 'r.log'));
  const pid = (JSON.parse(runc(root, ['state', restoredId])) as { pid: number }).pid;
  const [eth0] = ipJson<Array<{ address: string; addr_info: Array<{ family: string; local: string }> }>>(pid, ['addr', 'show', 'dev', 'eth0']);
  assert.equal(eth0?.address, att.mac);
  assert.deepEqual(eth0?.addr_info.filter((x) => x.family === 'inet').map((x) => x.local), [att.ip]);
  assert.deepEqual(ipJson<Array<{ state: string[] }>>(pid, ['neigh', 'show', 'dev', 'eth0', att.gateway])[0]?.state, ['PERMANENT']);
  const [veth] = ipJson<Array<{ master?: string; flags: string[] }>>(undefined, ['link', 'show', 'dev', att.hostVeth]);
  assert.equal(veth?.master, undefined);
  assert.ok(!veth?.flags.includes('UP'));
  await bringUp(target);
  assert.deepEqual(await getWhenUp(att.ip, 8080), { status: 200, body: `hello from ${id}` }, 'the restored httpd answers after bringUp');
});
