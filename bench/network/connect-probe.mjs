// bench/network's second migration probe: a FRESH TCP connection to the sample app's line echo every
// EVERY_MS, each sending one line and closing at the answer (or after TIMEOUT_MS without one). What
// it sees after a move does not wait on an old connection's retransmission timer. Prints the
// wall-clock time of every answer (epoch ms, 3 decimals), one a line.
//   node connect-probe.mjs HOST PORT [EVERY_MS] [TIMEOUT_MS]
import { connect } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setInterval, setTimeout, clearTimeout } from 'node:timers';

const [host, portText, everyText, timeoutText] = process.argv.slice(2);
const port = Number(portText);
const every = Number(everyText ?? 10);
const timeout = Number(timeoutText ?? 1000);
const now = () => performance.timeOrigin + performance.now();

const attempt = () => {
  const sock = connect({ host, port });
  sock.setNoDelay(true);
  let buffered = '';
  const timer = setTimeout(() => sock.destroy(), timeout);
  sock.on('connect', () => sock.write('probe\n'));
  sock.on('data', (b) => {
    buffered += b.toString();
    if (!buffered.includes('\n')) return;
    if (/^\d+: probe\n/.test(buffered)) process.stdout.write(`${now().toFixed(3)}\n`);
    clearTimeout(timer);
    sock.destroy();
  });
  sock.on('error', () => undefined);
  sock.on('close', () => clearTimeout(timer));
};
setInterval(attempt, every);
process.on('SIGTERM', () => process.exit(0));
