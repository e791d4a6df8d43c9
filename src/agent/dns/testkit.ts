/** Test helpers for the DNS server: build a query as a stub resolver would, read an answer back. */
import assert from 'node:assert/strict';
import { QTYPE } from './message.ts';

/** A query as a stub resolver sends it (RD set). */
export function query(name: string, type: number = QTYPE.A, o: { id?: number; flags?: number; qdcount?: number; cls?: number } = {}): Uint8Array {
  const labels = name === '' ? [] : name.split('.');
  const qname = Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')])), Buffer.from([0])]);
  const b = Buffer.alloc(12 + qname.length + 4);
  b.writeUInt16BE(o.id ?? 0x1234, 0);
  b.writeUInt16BE(o.flags ?? 0x0100, 2);
  b.writeUInt16BE(o.qdcount ?? 1, 4);
  qname.copy(b, 12);
  b.writeUInt16BE(type, 12 + qname.length);
  b.writeUInt16BE(o.cls ?? 1, 14 + qname.length);
  return b;
}

/** The parts of an answer the tests look at. */
export function decode(buf: Uint8Array): { id: number; rcode: number; aa: boolean; tc: boolean; rd: boolean; ra: boolean; qdcount: number; addresses: string[]; ttls: number[] } {
  const b = Buffer.from(buf);
  const flags = b.readUInt16BE(2);
  const qd = b.readUInt16BE(4);
  const an = b.readUInt16BE(6);
  let at = 12;
  for (let i = 0; i < qd; i++) {
    while (b[at] !== 0) at += (b[at] as number) + 1;
    at += 5;
  }
  const addresses: string[] = [];
  const ttls: number[] = [];
  for (let i = 0; i < an; i++) {
    assert.equal(b.readUInt16BE(at), 0xc00c, 'the answer points at the question name');
    assert.equal(b.readUInt16BE(at + 2), QTYPE.A);
    ttls.push(b.readUInt32BE(at + 6));
    assert.equal(b.readUInt16BE(at + 10), 4);
    addresses.push([...b.subarray(at + 12, at + 16)].join('.'));
    at += 16;
  }
  assert.equal(at, b.length, 'no bytes after the answers');
  return { id: b.readUInt16BE(0), rcode: flags & 0xf, aa: (flags & 0x0400) !== 0, tc: (flags & 0x0200) !== 0, rd: (flags & 0x0100) !== 0, ra: (flags & 0x0080) !== 0, qdcount: qd, addresses, ttls };
}

