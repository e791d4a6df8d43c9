import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildNameTable, lookupName, type NameSources } from './table.ts';

type C = NameSources['containers'][number];
type S = NameSources['statuses'][number];

const replica = (name: string, ip: string, o: Partial<C> = {}): C => ({ name, uid: `u-${name}`, ip, service: 'web', serviceUid: 'svc-web', ...o });
const running = (c: C, o: Partial<S> = {}): S => ({ name: c.name, uid: c.uid, node: 'n1', phase: 'running', ...o });

function sources(o: Partial<NameSources> = {}): NameSources {
  const a = replica('web-aaaaa', '10.240.0.5');
  const b = replica('web-bbbbb', '10.240.0.3');
  const cli = { name: 'cli', uid: 'u-cli', ip: '10.240.0.9' };
  const db = { name: 'db-11111', uid: 'u-db1', ip: '10.217.0.2', network: 'other', service: 'db', serviceUid: 'svc-db' };
  return {
    services: [{ name: 'web', uid: 'svc-web' }, { name: 'db', uid: 'svc-db', network: 'other' }],
    containers: [a, b, cli, db],
    statuses: [running(a), running(b, { node: 'n2' }), running(cli), running(db)],
    retirements: [],
    networks: [{ name: 'other', subnet: '10.217.0.0/24' }],
    ...o,
  };
}

const addresses = (r: ReturnType<typeof lookupName>): readonly string[] | string => (r.rcode === 'NOERROR' ? r.addresses : r.rcode);

test('a service names its running replicas (sorted), a container its own address; each on its own network', () => {
  const t = buildNameTable(sources());
  assert.deepEqual(addresses(lookupName(t, 'default', ['web'])), ['10.240.0.3', '10.240.0.5']);
  assert.deepEqual(addresses(lookupName(t, 'default', ['WEB', 'Ferry'])), ['10.240.0.3', '10.240.0.5']);
  assert.deepEqual(addresses(lookupName(t, 'default', ['web-aaaaa'])), ['10.240.0.5']);
  assert.deepEqual(addresses(lookupName(t, 'default', ['cli', 'ferry'])), ['10.240.0.9']);
  assert.deepEqual(addresses(lookupName(t, 'other', ['db'])), ['10.217.0.2']);
  // Another network's names are unknown here.
  assert.equal(addresses(lookupName(t, 'other', ['web'])), 'NXDOMAIN');
  assert.equal(addresses(lookupName(t, 'default', ['db-11111'])), 'NXDOMAIN');
  assert.equal(addresses(lookupName(t, 'nowhere', ['web'])), 'NXDOMAIN');
});

test('the zone: one label or *.ferry is ours (NXDOMAIN when unknown); anything else is refused, never forwarded', () => {
  const t = buildNameTable(sources());
  assert.equal(addresses(lookupName(t, 'default', ['nope'])), 'NXDOMAIN');
  assert.equal(addresses(lookupName(t, 'default', ['nope', 'ferry'])), 'NXDOMAIN');
  assert.equal(addresses(lookupName(t, 'default', ['web', 'ferry', 'ferry'])), 'NXDOMAIN');
  assert.equal(addresses(lookupName(t, 'default', ['example', 'com'])), 'REFUSED');
  assert.equal(addresses(lookupName(t, 'default', ['web', 'example', 'com'])), 'REFUSED');
  assert.equal(addresses(lookupName(t, 'default', [])), 'REFUSED');
  assert.equal(addresses(lookupName(t, 'default', ['5', '0', '240', '10', 'in-addr', 'arpa'])), 'REFUSED');
});

test('retiring, deleting, stopped, stale or address-less replicas leave the answer; a service without any has an empty one', () => {
  const s = sources();
  const [a, b] = s.containers as [C, C];
  const retiring = buildNameTable({ ...s, retirements: [{ container: a.name, uid: a.uid }] });
  assert.deepEqual(addresses(lookupName(retiring, 'default', ['web'])), ['10.240.0.3']);
  // The retiring container itself still answers to its own name: it runs until drained.
  assert.deepEqual(addresses(lookupName(retiring, 'default', [a.name])), ['10.240.0.5']);
  const deleting = buildNameTable({ ...s, containers: [{ ...a, deleting: true }, b] });
  assert.deepEqual(addresses(lookupName(deleting, 'default', ['web'])), ['10.240.0.3']);
  assert.equal(addresses(lookupName(deleting, 'default', [a.name])), 'NXDOMAIN');
  const stopped = buildNameTable({ ...s, statuses: [running(a, { phase: 'exited' }), running(b, { uid: 'an-older-one' })] });
  assert.deepEqual(addresses(lookupName(stopped, 'default', ['web'])), []);
  // The status's address serves when the container has none of its own (node-local networks).
  const local = buildNameTable({ ...s, containers: [{ ...a, ip: undefined }], statuses: [running(a, { ip: '10.213.0.7' })] });
  assert.deepEqual(addresses(lookupName(local, 'default', ['web'])), ['10.213.0.7']);
  const none = buildNameTable({ ...s, containers: [{ ...a, ip: undefined }], statuses: [running(a)] });
  assert.deepEqual(addresses(lookupName(none, 'default', ['web'])), []);
});

test('a deleting service goes at once; labels naming another service do not count', () => {
  const s = sources();
  const t = buildNameTable({ ...s, services: [{ name: 'web', uid: 'svc-web', deleting: true }] });
  assert.equal(addresses(lookupName(t, 'default', ['web'])), 'NXDOMAIN');
  const [a, b] = s.containers as [C, C];
  const forged = buildNameTable({ ...s, containers: [{ ...a, service: 'api' }, b] });
  assert.deepEqual(addresses(lookupName(forged, 'default', ['web'])), ['10.240.0.3']);
  const elsewhere = buildNameTable({ ...s, containers: [{ ...a, network: 'other' }, b] });
  assert.deepEqual(addresses(lookupName(elsewhere, 'default', ['web'])), ['10.240.0.3']);
});

test('a service wins over a container of the same name; letter case never splits a name', () => {
  const s = sources();
  const web = { name: 'web', uid: 'u-x', ip: '10.240.0.100' };
  const t = buildNameTable({ ...s, containers: [...s.containers, web], statuses: [...s.statuses, running(web)] });
  assert.deepEqual(addresses(lookupName(t, 'default', ['web'])), ['10.240.0.3', '10.240.0.5']);
  const upper = { name: 'CLI', uid: 'u-up', ip: '10.240.0.200' };
  const u = buildNameTable({ ...s, containers: [...s.containers, upper], statuses: [...s.statuses, running(upper)] });
  assert.deepEqual(addresses(lookupName(u, 'default', ['cli'])), ['10.240.0.200'], 'the first in code-point order keeps it');
});

test('with a node given, only its own containers are named (node-local networks)', () => {
  const t = buildNameTable(sources(), { node: 'n1' });
  assert.deepEqual(addresses(lookupName(t, 'default', ['web'])), ['10.240.0.5']);
  assert.equal(addresses(lookupName(t, 'default', ['web-bbbbb'])), 'NXDOMAIN');
});
