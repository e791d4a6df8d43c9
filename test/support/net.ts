/** Small network helpers for tests: free loopback ports and HTTP GETs with retries. */
import { createServer } from 'node:net';

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => res(port));
    });
  });
}

/** GETs `url` until it answers 2xx (or `attempts` run out); returns the body. */
export async function getWithRetry(url: string, attempts = 50, pauseMs = 100): Promise<string> {
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(2000) });
      if (r.ok) return await r.text();
      last = new Error(`HTTP ${r.status}`);
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, pauseMs));
  }
  throw new Error(`GET ${url} failed after ${attempts} attempts: ${(last as Error).message}`);
}
