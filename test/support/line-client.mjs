// A client that holds ONE TCP connection to the sample app's line echo (ECHO_PORT) and keeps
// exchanging lines: it sends "ping <k>" every INTERVAL ms (one line in flight at a time) and checks
// that each answer is "<n>: ping <k>" with n counting up by one. It prints one JSON line per event
// on stdout ({"ok":n} every 10 answers, {"error":…} once, {"done":…} on SIGTERM) and exits 0 only
// if the connection never failed. Usage: node line-client.mjs HOST PORT [INTERVAL_MS]
import { connect } from 'node:net';
import { setTimeout } from 'node:timers';

const [host, portText, intervalText] = process.argv.slice(2);
const interval = Number(intervalText ?? 20);
let sock;
let connected = false;
let attempts = 0;
let k = 0;
let lastN;
let answers = 0;
let buffered = '';
let failed;
let maxGapMs = 0;
let sentAt = 0;
const say = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const fail = (msg) => {
  if (failed) return;
  failed = msg;
  say({ error: msg, answers, lastN });
  finish(1);
};
const finish = (code) => {
  say({ done: true, answers, lastN, maxGapMs, error: failed ?? null });
  sock.destroy();
  process.exit(code);
};
const send = () => {
  k += 1;
  sentAt = Date.now();
  sock.write(`ping ${k}\n`);
};
// Until the first connection the server may still be starting: refused connects are retried (10 s).
const open = () => {
  sock = connect({ host, port: Number(portText) });
  sock.setNoDelay(true);
  sock.on('connect', () => {
    connected = true;
    say({ connected: true, local: `${sock.localAddress}:${sock.localPort}`, attempts: attempts + 1 });
    send();
  });
  sock.on('data', onData);
  sock.on('error', (e) => {
    if (!connected && e.code === 'ECONNREFUSED' && ++attempts < 100) return setTimeout(open, 100);
    fail(`socket error: ${e.message}`);
  });
  sock.on('close', () => { if (connected) fail('connection closed'); });
};
const onData = (b) => {
  buffered += b.toString();
  let nl;
  while ((nl = buffered.indexOf('\n')) >= 0) {
    const line = buffered.slice(0, nl);
    buffered = buffered.slice(nl + 1);
    const m = /^(\d+): ping (\d+)$/.exec(line);
    if (!m) return fail(`unexpected answer ${JSON.stringify(line)}`);
    const n = Number(m[1]);
    if (Number(m[2]) !== k) return fail(`answer to ping ${m[2]} while ping ${k} was in flight`);
    if (lastN !== undefined && n !== lastN + 1) return fail(`counter went from ${lastN} to ${n}`);
    lastN = n;
    answers += 1;
    maxGapMs = Math.max(maxGapMs, Date.now() - sentAt);
    if (answers % 10 === 0) say({ ok: answers, lastN });
    setTimeout(send, interval);
  }
};
open();
process.on('SIGTERM', () => finish(failed ? 1 : 0));
