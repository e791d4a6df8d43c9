import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeAnswer, parsePacket, QTYPE, replyTo, shuffled, TCP_MAX_BYTES, UDP_MAX_BYTES, type Resolution } from './message.ts';
import { decode, query } from './testkit.ts';

const known = (labels: readonly string[]): Resolution => {
  const name = labels.join('.').toLowerCase();
  if (name === 'web' || name === 'web.ferry') return { rcode: 'NOERROR', addresses: ['10.0.0.2', '10.0.0.3'] };
  if (name === 'empty') return { rcode: 'NOERROR', addresses: [] };
  return labels.length === 1 ? { rcode: 'NXDOMAIN' } : { rcode: 'REFUSED' };
};
const opts = { maxBytes: UDP_MAX_BYTES, ttl: 1 };

test('parse: a standard query gives its labels (case kept), type and class', () => {
  const p = parsePacket(query('Web.Ferry', QTYPE.AAAA, { id: 7 }));
  assert.equal(p.kind, 'query');
  if (p.kind !== 'query') return;
  assert.deepEqual(p.query.labels, ['Web', 'Ferry']);
  assert.equal(p.query.type, QTYPE.AAAA);
  assert.equal(p.query.class, 1);
  assert.equal(p.query.id, 7);
  assert.equal(p.query.recursionDesired, true);
});

test('parse: responses and runts are ignored; other opcodes, question counts and bad names are errors', () => {
  assert.equal(parsePacket(new Uint8Array(5)).kind, 'ignore');
  assert.equal(parsePacket(query('web', QTYPE.A, { flags: 0x8100 })).kind, 'ignore');
  assert.deepEqual(parsePacket(query('web', QTYPE.A, { flags: 0x2000 })), { kind: 'error', id: 0x1234, recursionDesired: false, rcode: 'NOTIMP' });
  assert.equal((parsePacket(query('web', QTYPE.A, { qdcount: 2 })) as { rcode: string }).rcode, 'FORMERR');
  assert.equal((parsePacket(query('web', QTYPE.A, { qdcount: 0 })) as { rcode: string }).rcode, 'FORMERR');
  const pointer = Buffer.from(query('web'));
  pointer[12] = 0xc0;
  assert.equal((parsePacket(pointer) as { rcode: string }).rcode, 'FORMERR');
  assert.equal((parsePacket(query('web').subarray(0, 17)) as { rcode: string }).rcode, 'FORMERR');
});

test('reply: a known name answers its addresses as A records with the TTL, authoritative, no recursion', () => {
  const r = decode(replyTo(query('web'), known, { ...opts, random: () => 0.99 })!);
  assert.equal(r.rcode, 0);
  assert.equal(r.aa, true);
  assert.equal(r.ra, false);
  assert.equal(r.rd, true);
  assert.equal(r.id, 0x1234);
  assert.equal(r.qdcount, 1);
  assert.deepEqual([...r.addresses].sort(), ['10.0.0.2', '10.0.0.3']);
  assert.deepEqual(r.ttls, [1, 1]);
  // ANY is answered like A; AAAA (and every other type) gets no records but no error (NODATA).
  assert.equal(decode(replyTo(query('web.ferry', QTYPE.ANY), known, opts)!).addresses.length, 2);
  const aaaa = decode(replyTo(query('web', QTYPE.AAAA), known, opts)!);
  assert.deepEqual([aaaa.rcode, aaaa.addresses], [0, []]);
  const empty = decode(replyTo(query('empty'), known, opts)!);
  assert.deepEqual([empty.rcode, empty.addresses], [0, []]);
});

test('reply: the question comes back byte for byte (0x20 letter case)', () => {
  const q = query('wEb');
  const out = replyTo(q, known, opts)!;
  assert.deepEqual(Buffer.from(out.subarray(12, q.length)), Buffer.from(q.subarray(12)));
});

test('reply: unknown names in the zone are NXDOMAIN, names outside it and odd classes REFUSED, bad packets FORMERR', () => {
  const nx = decode(replyTo(query('nope'), known, opts)!);
  assert.deepEqual([nx.rcode, nx.aa, nx.addresses], [3, true, []]);
  const refused = decode(replyTo(query('example.com'), known, opts)!);
  assert.deepEqual([refused.rcode, refused.aa], [5, false]);
  assert.equal(decode(replyTo(query('web', QTYPE.A, { cls: 3 }), known, opts)!).rcode, 5);
  const bad = decode(replyTo(query('web', QTYPE.A, { qdcount: 2 }), known, opts)!);
  assert.deepEqual([bad.rcode, bad.qdcount, bad.id], [1, 0, 0x1234]);
  assert.equal(replyTo(query('web', QTYPE.A, { flags: 0x8000 }), known, opts), undefined);
});

test('encode: what does not fit in a UDP answer is cut and flagged TC; TCP takes it all', () => {
  const many: Resolution = { rcode: 'NOERROR', addresses: Array.from({ length: 40 }, (_, i) => `10.0.1.${i + 1}`) };
  const udp = replyTo(query('web'), () => many, opts)!;
  assert.ok(udp.length <= UDP_MAX_BYTES);
  const u = decode(udp);
  assert.equal(u.tc, true);
  assert.equal(u.addresses.length, Math.floor((UDP_MAX_BYTES - 12 - 9) / 16));
  const t = decode(replyTo(query('web'), () => many, { ...opts, maxBytes: TCP_MAX_BYTES })!);
  assert.deepEqual([t.tc, t.addresses.length], [false, 40]);
  const p = parsePacket(query('web'));
  if (p.kind !== 'query') throw new Error('not a query');
  assert.equal(decode(encodeAnswer(p.query, { rcode: 'NOERROR', addresses: ['1.2.3.4'], ttl: 2, authoritative: true }, 512)).ttls[0], 2);
});

test('shuffle: a permutation, driven by the random source', () => {
  const items = ['a', 'b', 'c', 'd'];
  assert.deepEqual(shuffled(items, () => 0.999), items);
  assert.deepEqual(shuffled(items, () => 0), ['b', 'c', 'd', 'a']);
  let seed = 1;
  const rnd = (): number => ((seed = (seed * 16807) % 2147483647) / 2147483647);
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const s = shuffled(items, rnd);
    assert.deepEqual([...s].sort(), items);
    seen.add(s[0]!);
  }
  assert.equal(seen.size, 4, 'every address comes first sometimes');
  assert.deepEqual(items, ['a', 'b', 'c', 'd'], 'the input is left alone');
});
