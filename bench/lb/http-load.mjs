// bench/lb's continuous load: `connections` keep-alive connections (one request in flight on each),
// `paceMs` between an answer and the next request, every request written to `out` as one line:
//   <start, ms since the epoch> <latency µs> <status, 0 on error> <error or -> <replica or ->
// so the bench can count failures and latency per phase by its own clock. Runs until SIGTERM, then
// lets the requests in flight finish (bounded by the timeout), prints a JSON summary and exits 0.
import { Agent, request } from 'node:http';
import { createWriteStream } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { setImmediate, setTimeout } from 'node:timers';
import { parseArgs } from 'node:util';

const { values: v } = parseArgs({
  options: {
    address: { type: 'string' }, port: { type: 'string', default: '80' }, host: { type: 'string' },
    connections: { type: 'string', default: '16' }, 'pace-ms': { type: 'string', default: '10' },
    'timeout-ms': { type: 'string', default: '10000' }, out: { type: 'string' },
  },
});
if (!v.address || !v.host || !v.out) {
  console.log(JSON.stringify({ error: 'usage: http-load.mjs --address A --host H --out FILE [--port P] [--connections N] [--pace-ms MS] [--timeout-ms MS]' }));
  process.exit(2);
}
const port = Number(v.port);
const connections = Number(v.connections);
const paceMs = Number(v['pace-ms']);
const timeoutMs = Number(v['timeout-ms']);
const out = createWriteStream(v.out);
const now = () => performance.timeOrigin + performance.now();
let stopping = false;
let requests = 0;
let failed = 0;

/** One GET on `agent`'s connection: status, error and the replica that answered. */
function once(agent) {
  return new Promise((resolve) => {
    let settled = false;
    const done = (r) => { if (!settled) { settled = true; resolve(r); } };
    const req = request({ host: v.address, port, path: '/', headers: { host: v.host }, agent, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => {
        let replica = '-';
        try { replica = JSON.parse(body).hostname ?? '-'; } catch { /* not the sample app's answer */ }
        const ok = res.statusCode >= 200 && res.statusCode < 300;
        done({ status: res.statusCode, error: ok ? '-' : `status_${res.statusCode}`, replica });
      });
      res.on('error', (e) => done({ status: 0, error: e.code ?? e.message, replica: '-' }));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (e) => done({ status: 0, error: e.code ?? e.message, replica: '-' }));
    req.end();
  });
}

async function loop() {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  while (!stopping) {
    const t0 = now();
    const r = await once(agent);
    const us = Math.round((now() - t0) * 1000);
    requests += 1;
    if (r.error !== '-') failed += 1;
    out.write(`${t0.toFixed(1)} ${us} ${r.status} ${String(r.error).replace(/\s+/g, '_')} ${r.replica}\n`);
    // After an error, a short pause keeps a refused connection from spinning.
    const wait = r.error !== '-' && r.status === 0 ? Math.max(paceMs, 20) : paceMs;
    await new Promise((res) => (wait > 0 ? setTimeout(res, wait) : setImmediate(res)));
  }
  agent.destroy();
}

const loops = Array.from({ length: connections }, () => loop());
console.log(JSON.stringify({ started: true, connections, paceMs }));
process.on('SIGTERM', () => {
  if (stopping) return;
  stopping = true;
  void Promise.all(loops).then(() => out.end(() => {
    console.log(JSON.stringify({ requests, failed }));
    process.exit(0);
  }));
});
