/**
 * A client load for entry-point tests: a few loops sending HTTP requests (a new connection each, so
 * every request is routed afresh) to one address with a Host header, counting answers and failures.
 */
import { request } from 'node:http';

/** One failed request: when, and what went wrong. */
export interface LoadFailure {
  readonly at: number;
  readonly error: string;
}

/** A running load. */
export interface HttpLoad {
  /** Answers with status 2xx so far. */
  ok(): number;
  failures(): LoadFailure[];
  /** The replicas (sample app hostnames) that answered, with counts. */
  servedBy(): Map<string, number>;
  /** Waits until `n` more answers than now arrived. */
  flowing(n: number): Promise<void>;
  stop(): Promise<{ ok: number; failures: LoadFailure[] }>;
}

/** GETs http://address:port/path with `Host: host` once; resolves with status and body. */
export function getOnce(address: string, port: number, host: string, path = '/', timeoutMs = 15_000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: address, port, path, headers: { host }, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** Starts `loops` request loops against the entry point. */
export function startHttpLoad(address: string, port: number, host: string, loops = 2): HttpLoad {
  let ok = 0;
  let stopped = false;
  const failures: LoadFailure[] = [];
  const served = new Map<string, number>();
  const run = async (): Promise<void> => {
    while (!stopped) {
      try {
        const r = await getOnce(address, port, host);
        if (r.status >= 200 && r.status < 300) {
          ok += 1;
          const who = (JSON.parse(r.body) as { hostname?: string }).hostname ?? '?';
          served.set(who, (served.get(who) ?? 0) + 1);
        } else failures.push({ at: Date.now(), error: `status ${r.status}: ${r.body.slice(0, 200)}` });
      } catch (e) {
        failures.push({ at: Date.now(), error: (e as Error).message });
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  };
  const all = Array.from({ length: loops }, run);
  return {
    ok: () => ok,
    failures: () => [...failures],
    servedBy: () => new Map(served),
    async flowing(n) {
      const from = ok;
      const t0 = Date.now();
      while (ok < from + n) {
        if (Date.now() - t0 > 60_000) throw new Error(`the load did not get ${n} answers within 60 s (${ok - from} arrived; failures: ${failures.slice(-3).map((f) => f.error).join('; ')})`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async stop() {
      stopped = true;
      await Promise.all(all);
      return { ok, failures: [...failures] };
    },
  };
}
