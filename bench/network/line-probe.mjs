// bench/network's migration probe: ONE TCP connection to the sample app's line echo (ECHO_PORT),
// exchanging lines for as long as it runs — "ping <k>" out, "<n>: ping <k>" back, one in flight, the
// next INTERVAL ms after an answer. Prints the wall-clock time of every answer (epoch ms, 3 decimals;
// the same clock as the manager's phase timestamps), one a line, and a JSON line on failure.
//   node line-probe.mjs HOST PORT [INTERVAL_MS]
import { connect } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout } from 'node:timers';

const [host, portText, intervalText] = process.argv.slice(2);
const interval = Number(intervalText ?? 2);
const sock = connect({ host, port: Number(portText) });
const now = () => performance.timeOrigin + performance.now();
let k = 0;
let lastN;
let buffered = '';
const fail = (msg) => {
  process.stdout.write(`${JSON.stringify({ error: msg, lastN })}\n`);
  sock.destroy();
  process.exit(1);
};
const send = () => {
  k += 1;
  sock.write(`ping ${k}\n`);
};
sock.setNoDelay(true);
sock.on('connect', send);
sock.on('data', (b) => {
  buffered += b.toString();
  let nl;
  while ((nl = buffered.indexOf('\n')) >= 0) {
    const line = buffered.slice(0, nl);
    buffered = buffered.slice(nl + 1);
    const m = /^(\d+): ping (\d+)$/.exec(line);
    if (!m) return fail(`unexpected answer ${JSON.stringify(line)}`);
    if (Number(m[2]) !== k) return fail(`answer to ping ${m[2]} while ping ${k} was in flight`);
    const n = Number(m[1]);
    if (lastN !== undefined && n !== lastN + 1) return fail(`the counter went from ${lastN} to ${n} (the app restarted?)`);
    lastN = n;
    process.stdout.write(`${now().toFixed(3)}\n`);
    setTimeout(send, interval);
  }
});
sock.on('error', (e) => fail(`socket error: ${e.message}`));
sock.on('close', () => fail('connection closed'));
process.on('SIGTERM', () => {
  sock.destroy();
  process.exit(0);
});
