import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { startNameService, wantedListeners, type NameSourcesAt } from './names.ts';
import { lookupName } from './table.ts';

async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  const port = await new Promise<number>((r) => s.bind(0, '127.0.0.1', () => r(s.address().port)));
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Polls `f` until it returns true (tests never assert durations; the limit only ends a hung test). */
async function until(what: string, f: () => boolean): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (f()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`timed out waiting for ${what}`);
}

const snapshot = (revision: number, webIps: string[]): NameSourcesAt => ({
  revision,
  services: [{ name: 'web', uid: 's1' }],
  containers: webIps.map((ip, i) => ({ name: `web-${i}`, uid: `c${i}`, ip, service: 'web', serviceUid: 's1' })),
  statuses: webIps.map((_, i) => ({ name: `web-${i}`, uid: `c${i}`, node: 'n1', phase: 'running' })),
  retirements: [],
  networks: [{ name: 'other', subnet: '127.0.1.0/24' }],
});

test('wanted listeners: the default network and every named one whose gateway this host holds', () => {
  const named = [{ name: 'other', subnet: '10.217.0.0/24' }, { name: 'far', subnet: '10.217.1.0/24' }];
  assert.deepEqual(wantedListeners('10.240.0.0/16', named, new Set(['10.240.0.1', '10.217.0.1', '192.168.1.5'])), [
    { address: '10.240.0.1', network: 'default', subnet: '10.240.0.0/16' },
    { address: '10.217.0.1', network: 'other', subnet: '10.217.0.0/24' },
  ]);
  assert.deepEqual(wantedListeners('10.213.0.0/24', named, new Set(['127.0.0.1'])), []);
});

test('follows the sources with a long poll, answers from the newest table, and opens listeners as gateways appear', async (t) => {
  const port = await freeUdpPort();
  const asked: Array<number | undefined> = [];
  const pending: Array<(s: NameSourcesAt) => void> = [];
  const local = new Set(['127.0.0.1']);
  const ns = startNameService({
    read: (o) => {
      asked.push(o.afterRevision);
      if (o.afterRevision === undefined) return Promise.resolve(snapshot(10, ['10.0.0.2', '10.0.0.3']));
      // The long poll: answers when the test says something changed, or ends with the abort.
      return new Promise((resolve, reject) => {
        pending.push(resolve);
        o.signal.addEventListener('abort', () => reject(new Error('aborted')));
      });
    },
    defaultSubnet: '127.0.0.0/8', port, scanMs: 20, localAddresses: () => local, log: () => undefined,
  });
  t.after(() => ns.stop());
  await ns.ready();
  assert.deepEqual(ns.addresses(), ['127.0.0.1']);
  const r = new Resolver({ timeout: 2000, tries: 1 });
  r.setServers([`127.0.0.1:${port}`]);
  assert.deepEqual((await r.resolve4('web')).sort(), ['10.0.0.2', '10.0.0.3']);
  await until('the long poll after revision 10', () => pending.length === 1);
  assert.deepEqual(asked, [undefined, 10]);

  pending.shift()!(snapshot(12, ['10.0.0.3']));
  await until('the new table', () => {
    const x = lookupName(ns.table(), 'default', ['web']);
    return x.rcode === 'NOERROR' && x.addresses.length === 1;
  });
  assert.deepEqual(await r.resolve4('web'), ['10.0.0.3']);
  await until('the next long poll', () => asked.at(-1) === 12);

  // A named network's bridge comes up here: its gateway gets a listener at the next scan.
  local.add('127.0.1.1');
  await until('the listener on 127.0.1.1', () => ns.addresses().includes('127.0.1.1'));
  local.delete('127.0.1.1');
  await until('that listener to close', () => !ns.addresses().includes('127.0.1.1'));
  await ns.stop();
  assert.deepEqual(ns.addresses(), []);
});

test('keeps answering the last table while the manager is away, and opens nothing before the first', async (t) => {
  const port = await freeUdpPort();
  let calls = 0;
  const logs: string[] = [];
  const ns = startNameService({
    read: () => {
      calls += 1;
      return calls === 2 ? Promise.resolve(snapshot(3, ['10.0.0.9'])) : Promise.reject(new Error('cannot reach the manager'));
    },
    defaultSubnet: '127.0.0.0/8', port, scanMs: 20, localAddresses: () => new Set(['127.0.0.1']), log: (m) => logs.push(m),
  });
  t.after(() => ns.stop());
  assert.deepEqual(ns.addresses(), []);
  await ns.ready();
  await until('two failed polls after the first table', () => calls >= 4);
  const r = new Resolver({ timeout: 2000, tries: 1 });
  r.setServers([`127.0.0.1:${port}`]);
  assert.deepEqual(await r.resolve4('web.ferry'), ['10.0.0.9']);
  assert.equal(logs.filter((l) => l.includes('cannot reach the manager')).length, 2, 'the same failure is logged once per outage');
});
