import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Fence, type PeerContact } from './fence.ts';
import { prepareVolumes, readFenceToken } from './volumes.ts';
import { isFerryError } from '../errors/index.ts';
import { defaultSpec, type Assignment } from '../model/index.ts';

const wait = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('fence', () => {
  let dir = '';
  const fences: Fence[] = [];
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'ferry-fence-test-')); });
  afterEach(async () => {
    for (const f of fences.splice(0)) f.stop();
    await rm(dir, { recursive: true, force: true });
  });

  /** A fence with a 1 s lease and no grace: limit max(1000, 1000 − 2000) = 1 s; peers asked from the start. */
  function make(ask: (url: string) => Promise<PeerContact>): { fence: Fence; fenced: () => number; logs: string[] } {
    let fenced = 0;
    const logs: string[] = [];
    const fence = new Fence({
      file: join(dir, 'stamp'), leaseTtlSeconds: 1, graceSeconds: 0, askPeer: ask, log: (m) => logs.push(m),
      onFenced: () => { fenced++; }, onUnfenced: () => undefined,
    });
    fences.push(fence);
    return { fence, fenced: () => fenced, logs };
  }

  it('fences when no heartbeat is answered and peers still reach the manager', async () => {
    const f = make(async () => ({ managerOkAgoMs: 100 }));
    await f.fence.start();
    await f.fence.setPeers(['http://peer']);
    await wait(1600);
    assert.equal(f.fenced(), 1);
    assert.ok(f.fence.due(), 'the stamp is past the limit: the shims kill');
    assert.ok(f.logs.some((l) => /peers still reach the manager/.test(l)), f.logs.join('\n'));
  });

  it('fences when no peer answers (this host is cut off)', async () => {
    const f = make(async () => { throw new Error('unreachable'); });
    await f.fence.start();
    await f.fence.setPeers(['http://a', 'http://b']);
    await wait(1600);
    assert.equal(f.fenced(), 1);
  });

  it('keeps running when peers answer but none reaches the manager (the manager is down), and with no peers at all', async () => {
    const down = make(async () => ({ managerOkAgoMs: 60_000 }));
    await down.fence.start();
    await down.fence.setPeers(['http://peer']);
    await wait(1800);
    assert.equal(down.fenced(), 0);
    assert.equal(down.fence.due(), false, 'the stamp is kept fresh');
    down.fence.stop();
    await rm(join(dir, 'stamp'));
    await rm(join(dir, 'peers.json'));
    const alone = make(async () => assert.fail('no peer to ask'));
    await alone.fence.start();
    await wait(1800);
    assert.equal(alone.fenced(), 0);
  });

  it('a stale stamp from an earlier run starts fenced; the manager\'s Ready lifts it; Down keeps it', async () => {
    await writeFile(join(dir, 'stamp'), '');
    const old = (Date.now() - 60_000) / 1000;
    await utimes(join(dir, 'stamp'), old, old);
    const f = make(async () => ({ managerOkAgoMs: 0 }));
    await f.fence.start();
    assert.equal(f.fence.isFenced, true);
    await f.fence.contact(Date.now(), 'Down');
    assert.equal(f.fence.isFenced, true);
    await f.fence.contact(Date.now(), 'Ready');
    assert.equal(f.fence.isFenced, false);
    assert.ok(Date.now() - (await stat(join(dir, 'stamp'))).mtimeMs < 1000, 'the answered heartbeat stamped the file');
  });

  it('a clean stop with the whole cluster down postpones the fence', async () => {
    const f = make(async () => ({ managerOkAgoMs: 0 }));
    await f.fence.start();
    await f.fence.suspend(3600_000);
    assert.ok((await stat(join(dir, 'stamp'))).mtimeMs > Date.now() + 3000_000);
  });
});

describe('shared volume fence tokens', () => {
  let dir = '';
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'ferry-volume-test-')); });
  afterEach(async () => { await rm(dir, { recursive: true, force: true }); });
  const idMap = { containerId: 0, hostId: 100000, size: 65536 };
  const assignment = (epoch: number, uid = 'u1'): Assignment => ({
    name: 'db', uid, generation: 1, epoch, spec: { ...defaultSpec('sample'), volumes: [{ source: 'data', target: '/data', readOnly: false, kind: 'shared' }] },
  });

  it('the newest epoch takes the token; an older one is refused; another container does not take it over', async () => {
    const roots = { local: join(dir, 'local'), shared: join(dir, 'shared') };
    const [v] = await prepareVolumes(roots, assignment(2), 'n1', idMap);
    assert.equal(v!.source, join(dir, 'shared', 'data', 'data'));
    assert.equal((await stat(v!.source)).uid, 100000, "owned by the container's root");
    assert.deepEqual([(await readFenceToken(join(dir, 'shared', 'data')))?.epoch, (await readFenceToken(join(dir, 'shared', 'data')))?.node], [2, 'n1']);
    await prepareVolumes(roots, assignment(3), 'n2', idMap);
    await assert.rejects(prepareVolumes(roots, assignment(2), 'n1', idMap), (e) => isFerryError(e, 'VOLUME_FENCED') && /epoch 3 \(on n2/.test(e.message));
    await prepareVolumes(roots, assignment(1, 'other'), 'n1', idMap);
    assert.equal((await readFenceToken(join(dir, 'shared', 'data')))?.uid, 'u1');
    // A migration's restore (fence: false) leaves the token alone.
    await prepareVolumes(roots, assignment(2), 'n1', idMap, { fence: false });
    assert.equal((await readFenceToken(join(dir, 'shared', 'data')))?.epoch, 3);
  });

  it('a shared volume on a node without a shared root is refused with the flag to set', async () => {
    await assert.rejects(prepareVolumes({ local: join(dir, 'local') }, assignment(1), 'n1', idMap), (e) => isFerryError(e, 'NO_SHARED_VOLUMES') && /--shared-volumes DIR/.test(e.message));
  });
});
