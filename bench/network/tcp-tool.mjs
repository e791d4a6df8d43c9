// bench/network's traffic tool: one TCP server and two clients, run in a network namespace with
// `nsenter --net=<path> -- node tcp-tool.mjs …`. Each prints JSON lines on stdout.
//   serve PORT                        a connection's first byte picks its mode: T = count what arrives
//                                     and answer {bytes, ms} at the sender's end; P = echo everything back
//   stream HOST PORT SECONDS          sends as fast as the socket takes it for SECONDS; prints the
//                                     receiver's count and time (first byte → end of stream)
//   pingpong HOST PORT SECONDS SIZE   SIZE bytes out, SIZE bytes back, one exchange in flight, for
//                                     SECONDS after a warm-up; prints the round trips' percentiles (µs)
import { createServer, connect } from 'node:net';
import { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';

const [mode, ...args] = process.argv.slice(2);
const say = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const die = (msg) => {
  say({ error: msg });
  process.exit(1);
};

function serve(port) {
  const server = createServer((sock) => {
    sock.setNoDelay(true);
    let kind;
    let bytes = 0;
    let first = 0;
    sock.on('data', (d) => {
      if (kind === undefined) {
        kind = String.fromCharCode(d[0]);
        d = d.subarray(1);
        if (d.length === 0) return;
      }
      if (kind === 'P') sock.write(d);
      else {
        if (bytes === 0) first = performance.now();
        bytes += d.length;
      }
    });
    sock.on('end', () => {
      if (kind === 'T') sock.end(`${JSON.stringify({ bytes, ms: performance.now() - first })}\n`);
      else sock.end();
    });
    sock.on('error', () => sock.destroy());
  });
  server.on('error', (e) => die(`listen: ${e.message}`));
  server.listen(port, '0.0.0.0', () => say({ listening: port }));
  process.on('SIGTERM', () => process.exit(0));
}

function open(host, port, kind, then) {
  const sock = connect({ host, port });
  sock.setNoDelay(true);
  sock.on('error', (e) => die(`${host}:${port}: ${e.message}`));
  sock.on('connect', () => {
    sock.write(kind);
    then(sock);
  });
}

function stream(host, port, seconds) {
  const chunk = Buffer.alloc(256 * 1024, 0x5a);
  open(host, port, 'T', (sock) => {
    const t0 = performance.now();
    let sent = 0;
    let reply = '';
    const pump = () => {
      while (performance.now() - t0 < seconds * 1000) {
        sent += chunk.length;
        if (!sock.write(chunk)) return void sock.once('drain', pump);
      }
      sock.end();
    };
    sock.on('data', (d) => { reply += d.toString(); });
    sock.on('end', () => {
      const r = JSON.parse(reply);
      if (r.bytes !== sent) die(`sent ${sent} bytes, the receiver counted ${r.bytes}`);
      say({ bytes: r.bytes, ms: r.ms, bitsPerSec: (8 * r.bytes) / (r.ms / 1000) });
      process.exit(0);
    });
    pump();
  });
}

function pingpong(host, port, seconds, size) {
  const msg = Buffer.alloc(size, 0x61);
  const WARMUP = 500;
  open(host, port, 'P', (sock) => {
    const rtts = [];
    let got = 0;
    let t = 0;
    let n = 0;
    let measureFrom = 0;
    const send = () => {
      got = 0;
      t = performance.now();
      sock.write(msg);
    };
    sock.on('data', (d) => {
      got += d.length;
      if (got < size) return;
      const now = performance.now();
      if (got > size) die(`echo returned ${got} bytes for ${size}`);
      n += 1;
      if (n === WARMUP) measureFrom = now;
      else if (n > WARMUP) rtts.push((now - t) * 1000);
      if (n > WARMUP && now - measureFrom >= seconds * 1000) {
        rtts.sort((a, b) => a - b);
        const q = (p) => rtts[Math.min(rtts.length - 1, Math.floor(p * rtts.length))];
        say({ count: rtts.length, p50: q(0.5), p90: q(0.9), p99: q(0.99), min: rtts[0], max: rtts[rtts.length - 1], mean: rtts.reduce((a, b) => a + b, 0) / rtts.length });
        sock.destroy();
        process.exit(0);
      }
      send();
    });
    send();
  });
}

const num = (s, what) => {
  const n = Number(s);
  if (!(n > 0)) die(`${what} must be a positive number, not ${JSON.stringify(s)}`);
  return n;
};
if (mode === 'serve') serve(num(args[0], 'PORT'));
else if (mode === 'stream') stream(args[0], num(args[1], 'PORT'), num(args[2], 'SECONDS'));
else if (mode === 'pingpong') pingpong(args[0], num(args[1], 'PORT'), num(args[2], 'SECONDS'), num(args[3], 'SIZE'));
else die('usage: tcp-tool.mjs serve PORT | stream HOST PORT SECONDS | pingpong HOST PORT SECONDS SIZE');
