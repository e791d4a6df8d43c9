import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { LEADER_HEADER, requestJson, send } from './http.ts';
import { freePort } from '../../test/support/net.ts';

/** A fake manager: the leader answers `{ok: name}`, a standby answers NOT_LEADER naming `leader()`. */
function fakeManager(name: string, role: () => 'leader' | 'standby', leader: () => string | undefined, hits: string[]): Server {
  return createServer((req, res) => {
    hits.push(`${name} ${req.method} ${req.url}`);
    if (role() === 'leader') {
      if (req.url === '/v1/missing') {
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 'FERRY_ERR_NOT_FOUND', message: 'no such thing', details: {} }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: name }));
      return;
    }
    const l = leader();
    res.writeHead(503, { 'content-type': 'application/json', ...(l ? { [LEADER_HEADER]: l } : {}) });
    res.end(JSON.stringify({ code: 'FERRY_ERR_NOT_LEADER', message: `manager ${name} is standing by`, details: { name, leader: l ?? null } }));
  });
}

const listen = (s: Server): Promise<string> => new Promise((resolve) => s.listen(0, '127.0.0.1', () => {
  const a = s.address();
  resolve(`http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`);
}));

describe('clients follow the leader among several manager URLs', () => {
  const hits: string[] = [];
  let leaderName = 'b';
  const servers: Record<string, Server> = {};
  const urls: Record<string, string> = {};
  let dead = '';
  before(async () => {
    for (const n of ['a', 'b']) {
      servers[n] = fakeManager(n, () => (leaderName === n ? 'leader' : 'standby'), () => urls[leaderName], hits);
      urls[n] = await listen(servers[n] as Server);
    }
    dead = `http://127.0.0.1:${await freePort()}`;
  });
  after(async () => {
    for (const s of Object.values(servers)) await new Promise((r) => s.close(r));
  });

  it('skips a refused URL, follows NOT_LEADER to the named leader, then goes straight there', async () => {
    const ep = { url: `${dead},${urls.a},${urls.b}`, token: 't' };
    hits.length = 0;
    assert.deepEqual(await requestJson(ep, 'GET', '/v1/x'), { ok: 'b' });
    assert.deepEqual(hits, ['a GET /v1/x', 'b GET /v1/x']);
    hits.length = 0;
    assert.deepEqual(await requestJson(ep, 'POST', '/v1/y', { body: { n: 1 } }), { ok: 'b' });
    assert.deepEqual(hits, ['b POST /v1/y']);
  });

  it('follows a new leader, and passes other errors through without trying elsewhere', async () => {
    const ep = { url: `${urls.a},${urls.b}` };
    await requestJson(ep, 'GET', '/v1/x');
    leaderName = 'a';
    hits.length = 0;
    assert.deepEqual(await requestJson(ep, 'GET', '/v1/x'), { ok: 'a' });
    assert.deepEqual(hits, ['b GET /v1/x', 'a GET /v1/x']);
    hits.length = 0;
    await assert.rejects(requestJson(ep, 'GET', '/v1/missing'), { code: 'FERRY_ERR_NOT_FOUND', status: 404 });
    assert.deepEqual(hits, ['a GET /v1/missing']);
  });

  it('follows the named leader from a single URL too', async () => {
    leaderName = 'a';
    hits.length = 0;
    assert.deepEqual(await requestJson({ url: urls.b as string }, 'GET', '/v1/z'), { ok: 'a' });
    assert.deepEqual(hits, ['b GET /v1/z', 'a GET /v1/z']);
  });

  it('gives up with NOT_LEADER when no URL leads, trying each once', async () => {
    leaderName = 'gone';
    urls.gone = dead;
    hits.length = 0;
    await assert.rejects(requestJson({ url: `${urls.a},${urls.b}` }, 'GET', '/v1/x'), { code: 'FERRY_ERR_NOT_LEADER', status: 503 });
    assert.deepEqual(hits.sort(), ['a GET /v1/x', 'b GET /v1/x']);
    await assert.rejects(send({ url: dead }, 'GET', '/v1/x'), { code: 'FERRY_ERR_UNREACHABLE', status: 503 });
  });

  it('sends a streamed body to one URL only (it cannot be replayed)', async () => {
    leaderName = 'b';
    hits.length = 0;
    async function* body(): AsyncGenerator<Uint8Array> { yield new TextEncoder().encode('x'); }
    await assert.rejects(send({ url: `${urls.a},${urls.b}` }, 'PUT', '/v1/up', { rawBody: body() }), { code: 'FERRY_ERR_NOT_LEADER' });
    assert.deepEqual(hits, ['a PUT /v1/up']);
  });
});
