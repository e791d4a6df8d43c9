/**
 * DNS messages (RFC 1035), only as far as the agent's name server needs: a query with one question
 * in, an answer of A records (or an error code) out. Pure: no sockets, no clock.
 */

/** Record types the server tells apart. */
export const QTYPE = { A: 1, AAAA: 28, ANY: 255 } as const;
/** Classes it answers (others are refused). */
const QCLASS_IN = 1;
const QCLASS_ANY = 255;

/** Response codes. */
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
/** A response code's name. */
export type Rcode = keyof typeof RCODE;

/** Largest UDP answer without EDNS; a longer one is cut and flagged TC, so the client asks again over TCP. */
export const UDP_MAX_BYTES = 512;
/** Largest answer over TCP (its two-byte length prefix). */
export const TCP_MAX_BYTES = 65_535;

const HEADER_BYTES = 12;
const A_RECORD_BYTES = 16;
const MAX_NAME_BYTES = 255;

/** A parsed query. */
export interface DnsQuery {
  readonly id: number;
  /** The RD bit, echoed in the answer. */
  readonly recursionDesired: boolean;
  /** The question's labels as sent (case kept); empty for the root. */
  readonly labels: readonly string[];
  readonly type: number;
  readonly class: number;
  /** The question section's bytes, echoed verbatim (so the client's letter case comes back, as 0x20 checks want). */
  readonly question: Uint8Array;
}

/** What parsing a packet gave: a query, a malformed one to answer with an error, or nothing to answer. */
export type ParsedPacket =
  | { readonly kind: 'query'; readonly query: DnsQuery }
  | { readonly kind: 'error'; readonly id: number; readonly recursionDesired: boolean; readonly rcode: Rcode }
  | { readonly kind: 'ignore' };

/** What the name table says about a name (see table.ts). */
export type Resolution =
  | { readonly rcode: 'NOERROR'; readonly addresses: readonly string[] }
  | { readonly rcode: 'NXDOMAIN' }
  | { readonly rcode: 'REFUSED' };

/** Parses one DNS message; anything but a standard query with exactly one question gets an error code. */
export function parsePacket(buf: Uint8Array): ParsedPacket {
  // Too short to carry an id, or a response (answering responses could start a loop): say nothing.
  if (buf.length < HEADER_BYTES) return { kind: 'ignore' };
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const id = view.getUint16(0);
  const flags = view.getUint16(2);
  if ((flags & 0x8000) !== 0) return { kind: 'ignore' };
  const recursionDesired = (flags & 0x0100) !== 0;
  const fail = (rcode: Rcode): ParsedPacket => ({ kind: 'error', id, recursionDesired, rcode });
  if (((flags >> 11) & 0xf) !== 0) return fail('NOTIMP');
  if (view.getUint16(4) !== 1) return fail('FORMERR');
  const labels: string[] = [];
  let at = HEADER_BYTES;
  for (let nameBytes = 1; ; ) {
    if (at >= buf.length) return fail('FORMERR');
    const len = buf[at] as number;
    at += 1;
    if (len === 0) break;
    // 0xC0 is a compression pointer, 0x40/0x80 are obsolete label types: none belong in a question.
    if (len > 63) return fail('FORMERR');
    nameBytes += len + 1;
    if (nameBytes > MAX_NAME_BYTES || at + len > buf.length) return fail('FORMERR');
    labels.push(Buffer.from(buf.subarray(at, at + len)).toString('latin1'));
    at += len;
  }
  if (at + 4 > buf.length) return fail('FORMERR');
  const type = view.getUint16(at);
  const cls = view.getUint16(at + 2);
  at += 4;
  return { kind: 'query', query: { id, recursionDesired, labels, type, class: cls, question: buf.subarray(HEADER_BYTES, at) } };
}

/** An answer to encode. */
export interface DnsAnswer {
  readonly rcode: Rcode;
  /** IPv4 addresses of A records (only with NOERROR). */
  readonly addresses: readonly string[];
  readonly ttl: number;
  /** The AA bit: set for names in the zone the server owns. */
  readonly authoritative: boolean;
}

/**
 * Encodes the answer to `q` in at most `maxBytes`. Records that do not fit are left out and the TC
 * bit set, so a client retries over TCP; RA stays clear (the server never recurses).
 */
export function encodeAnswer(q: DnsQuery, a: DnsAnswer, maxBytes: number): Uint8Array {
  const room = Math.max(0, Math.floor((maxBytes - HEADER_BYTES - q.question.length) / A_RECORD_BYTES));
  const addresses = a.addresses.slice(0, room);
  const truncated = addresses.length < a.addresses.length;
  const out = new Uint8Array(HEADER_BYTES + q.question.length + addresses.length * A_RECORD_BYTES);
  const view = new DataView(out.buffer);
  writeHeader(view, q.id, { rd: q.recursionDesired, aa: a.authoritative, tc: truncated, rcode: a.rcode }, 1, addresses.length);
  out.set(q.question, HEADER_BYTES);
  let at = HEADER_BYTES + q.question.length;
  for (const ip of addresses) {
    view.setUint16(at, 0xc000 | HEADER_BYTES); // a pointer to the question's name
    view.setUint16(at + 2, QTYPE.A);
    view.setUint16(at + 4, QCLASS_IN);
    view.setUint32(at + 6, a.ttl);
    view.setUint16(at + 10, 4);
    out.set(ipv4Bytes(ip), at + 12);
    at += A_RECORD_BYTES;
  }
  return out;
}

/** A header-only answer carrying `rcode` (for packets that could not be read as a query). */
export function encodeError(id: number, recursionDesired: boolean, rcode: Rcode): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES);
  writeHeader(new DataView(out.buffer), id, { rd: recursionDesired, aa: false, tc: false, rcode }, 0, 0);
  return out;
}

function writeHeader(view: DataView, id: number, f: { rd: boolean; aa: boolean; tc: boolean; rcode: Rcode }, qd: number, an: number): void {
  view.setUint16(0, id);
  view.setUint16(2, 0x8000 | (f.aa ? 0x0400 : 0) | (f.tc ? 0x0200 : 0) | (f.rd ? 0x0100 : 0) | RCODE[f.rcode]);
  view.setUint16(4, qd);
  view.setUint16(6, an);
  view.setUint16(8, 0);
  view.setUint16(10, 0);
}

function ipv4Bytes(ip: string): number[] {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) return [0, 0, 0, 0];
  return parts;
}

/** How `replyTo` answers. */
export interface ReplyOptions {
  /** UDP_MAX_BYTES or TCP_MAX_BYTES. */
  readonly maxBytes: number;
  /** Seconds clients may keep an answer. */
  readonly ttl: number;
  /** A number in [0, 1) (Math.random); the addresses are shuffled with it. */
  readonly random?: () => number;
}

/**
 * The whole reply to one packet: parse it, ask `resolve` about the question's name, encode. A name
 * that resolves answers A records for A and ANY questions and no records (NODATA) for other types;
 * undefined means the packet gets no reply.
 */
export function replyTo(packet: Uint8Array, resolve: (labels: readonly string[]) => Resolution, o: ReplyOptions): Uint8Array | undefined {
  const p = parsePacket(packet);
  if (p.kind === 'ignore') return undefined;
  if (p.kind === 'error') return encodeError(p.id, p.recursionDesired, p.rcode);
  const q = p.query;
  const refused = (): Uint8Array => encodeAnswer(q, { rcode: 'REFUSED', addresses: [], ttl: 0, authoritative: false }, o.maxBytes);
  if (q.class !== QCLASS_IN && q.class !== QCLASS_ANY) return refused();
  const r = resolve(q.labels);
  if (r.rcode === 'REFUSED') return refused();
  if (r.rcode === 'NXDOMAIN') return encodeAnswer(q, { rcode: 'NXDOMAIN', addresses: [], ttl: 0, authoritative: true }, o.maxBytes);
  const wantsA = q.type === QTYPE.A || q.type === QTYPE.ANY;
  const addresses = wantsA ? shuffled(r.addresses, o.random ?? Math.random) : [];
  return encodeAnswer(q, { rcode: 'NOERROR', addresses, ttl: o.ttl, authoritative: true }, o.maxBytes);
}

/** A shuffled copy (Fisher–Yates), so clients that take the first address spread over the replicas. */
export function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}
