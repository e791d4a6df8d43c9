// A client that asks the sample app's counter (GET / on HOST:PORT) again and again: one request at a
// time, each on a new connection with a 5 s timeout, INTERVAL ms apart. It prints one JSON line per
// request ({"count":n} for an answer, {"error":…} for a try that failed) and, on SIGTERM, lets the
// request in flight end (so no counted request goes unreported), prints {"done":true} and exits 0.
// Usage: node http-poller.mjs HOST PORT [INTERVAL_MS]
import { request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';

const [host, portText, intervalText] = process.argv.slice(2);
const interval = Number(intervalText ?? 10);
let stopping = false;
process.on('SIGTERM', () => { stopping = true; });
const say = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

const ask = () => new Promise((resolve) => {
  const req = request({ host, port: Number(portText), path: '/', agent: false, timeout: 5000, headers: { connection: 'close' } }, (res) => {
    let body = '';
    res.setEncoding('utf8');
    res.on('data', (d) => { body += d; });
    res.on('error', (e) => resolve({ error: `reading the answer: ${e.message}` }));
    res.on('end', () => {
      let count;
      try { count = JSON.parse(body).count; } catch { /* reported below */ }
      resolve(res.statusCode === 200 && typeof count === 'number' ? { count } : { error: `HTTP ${res.statusCode}: ${JSON.stringify(body)}` });
    });
  });
  req.on('timeout', () => req.destroy(new Error('no answer within 5 s')));
  req.on('error', (e) => resolve({ error: e.message }));
  req.end();
});

while (!stopping) {
  const r = await ask();
  say(r.error ? { ...r, at: new Date().toISOString() } : r);
  await sleep(interval);
}
say({ done: true });
