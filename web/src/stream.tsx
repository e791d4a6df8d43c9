/**
 * The live-data demo: a service's Server-Sent Events (the sample app's /stream, 20 per second)
 * opened through the entry point by the manager (GET /v1/services/:name/stream) and charted as they
 * come. A migration of the replica shows as a short gap; `seq` lives in the process, so it goes on
 * from where it was — a reset or a step back would mean the state was lost, and is counted.
 */
import type { JSX } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import type { FerryClient, ServiceView } from './api.ts';
import { why } from './api.ts';
import { Chart } from './chart.tsx';
import { ms } from './format.ts';

/** One event of the sample app. */
interface Point { seq: number; t: number; value: number }

/** What the panel has received so far (also on window.ferryStream, for tests and for a look from the console). */
export interface StreamLog {
  service: string;
  seqs: number[];
  /** Times (ms) at which each event arrived in the browser. */
  arrivals: number[];
  backwards: number;
  reconnects: number;
  /** Longest time between two consecutive events, by the app's clock (the freeze shows here). */
  maxGapMs: number;
  error?: string;
}

const WINDOW = 600;

/** Reads SSE `data:` lines from a response body, calling `each` per event, until it ends or `signal` aborts. */
async function readEvents(res: Response, each: (p: Point) => void): Promise<void> {
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = frame.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n');
      if (data) {
        try { each(JSON.parse(data) as Point); } catch { /* not one of ours */ }
      }
    }
  }
}

/** The stream panel: pick a service, chart its stream until stopped; reconnects by itself when the stream breaks. */
export function StreamPanel(p: { client: FerryClient; services: ServiceView[] }): JSX.Element {
  const http = p.services.filter((s) => s.service.spec.http);
  const [service, setService] = useState('');
  const [path, setPath] = useState('/stream');
  const [running, setRunning] = useState(false);
  const [, setTick] = useState(0);
  const log = useRef<StreamLog | null>(null);
  const chart = useRef<{ x: number[]; y: (number | null)[] }>({ x: [], y: [] });
  const choice = service || http[0]?.service.metadata.name || '';

  useEffect(() => {
    if (!running || !choice) return;
    const ac = new AbortController();
    const l: StreamLog = { service: choice, seqs: [], arrivals: [], backwards: 0, reconnects: 0, maxGapMs: 0 };
    log.current = l;
    (window as unknown as { ferryStream?: StreamLog }).ferryStream = l;
    chart.current = { x: [], y: [] };
    let lastT = 0;
    const add = (pt: Point): void => {
      const prev = l.seqs[l.seqs.length - 1];
      if (prev !== undefined && pt.seq <= prev) l.backwards++;
      if (lastT > 0) l.maxGapMs = Math.max(l.maxGapMs, pt.t - lastT);
      // The app stood still (frozen): a null breaks the line there instead of joining across the gap.
      if (lastT > 0 && pt.t - lastT > 250) { chart.current.x.push((lastT + 1) / 1000); chart.current.y.push(null); }
      lastT = pt.t;
      l.seqs.push(pt.seq);
      l.arrivals.push(Date.now());
      chart.current.x.push(pt.t / 1000);
      chart.current.y.push(pt.value);
      if (chart.current.x.length > WINDOW) { chart.current.x.shift(); chart.current.y.shift(); }
    };
    void (async () => {
      for (let first = true; !ac.signal.aborted; first = false) {
        if (!first) l.reconnects++;
        try {
          const res = await p.client.services.stream(choice, { path, signal: ac.signal });
          l.error = undefined;
          await readEvents(res, add);
        } catch (e) {
          if (ac.signal.aborted) return;
          l.error = why(e);
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    })();
    // Redraw a few times a second, not on every event.
    const redraw = setInterval(() => setTick((n) => n + 1), 200);
    return () => { ac.abort(); clearInterval(redraw); };
  }, [running, choice, path, p.client]);

  const l = log.current;
  const width = Math.min(1100, Math.max(480, window.innerWidth - 80));
  return (
    <section class="panel stream" data-testid="stream-panel">
      <h2>Live data <small>a service's stream through the entry point</small></h2>
      {http.length === 0 ? <p class="muted">No service with an HTTP host yet. Try: <code>ferry service create demo --image sample --http-host demo.local</code></p> : (
        <div class="row">
          <label>Service{' '}
            <select data-testid="stream-service" value={choice} disabled={running} onChange={(e) => setService((e.target as HTMLSelectElement).value)}>
              {http.map((s) => <option key={s.service.metadata.name} value={s.service.metadata.name}>{s.service.metadata.name} ({s.service.spec.http!.hosts[0]})</option>)}
            </select>
          </label>
          <label>Path <input value={path} disabled={running} size={12} onInput={(e) => setPath((e.target as HTMLInputElement).value)} /></label>
          {running
            ? <button data-testid="stream-stop" onClick={() => setRunning(false)}>Stop</button>
            : <button class="primary" data-testid="stream-start" onClick={() => setRunning(true)}>Chart it</button>}
        </div>
      )}
      {running && l && (
        <>
          <div class="figures" data-testid="stream-stats" data-points={l.seqs.length} data-last-seq={l.seqs[l.seqs.length - 1] ?? ''} data-backwards={l.backwards} data-reconnects={l.reconnects}>
            <span>events <b>{l.seqs.length}</b></span>
            <span>seq <b>{l.seqs[l.seqs.length - 1] ?? '-'}</b></span>
            <span>longest gap <b>{ms(l.maxGapMs)}</b></span>
            <span class={l.backwards > 0 ? 'bad' : 'good'}>seq went back <b>{l.backwards}</b>×</span>
            <span>reconnects <b>{l.reconnects}</b></span>
            {l.error && <span class="bad" data-testid="stream-error">{l.error}</span>}
          </div>
          <Chart testid="stream-chart" points={false} width={width} height={220} data={[chart.current.x.slice(), chart.current.y.slice()]}
            series={[{ label: 'value', stroke: '#4fc3f7', value: (v) => (v === null ? '-' : v.toFixed(3)) }]} />
        </>
      )}
    </section>
  );
}
