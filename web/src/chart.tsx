/** A uPlot chart as a Preact component: made once on mount, fed new data on every render. */
import type { JSX } from 'preact';
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

/** Chart props: `data[0]` is x (seconds), the rest one array per series. */
export interface ChartProps {
  data: uPlot.AlignedData;
  series: { label: string; stroke: string; scale?: string; value?: (v: number | null) => string }[];
  width: number;
  height: number;
  /** Axis formatters by scale name ('y' by default). */
  axes?: Record<string, (v: number) => string>;
  testid?: string;
  /** Draw a dot per point (off for dense series). */
  points?: boolean;
}

/** Renders a time-series chart; gaps (null) show as breaks in the line. */
export function Chart(p: ChartProps): JSX.Element {
  const el = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    const scales = [...new Set(p.series.map((s) => s.scale ?? 'y'))];
    const opts: uPlot.Options = {
      width: p.width, height: p.height, legend: { show: true }, cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      series: [{}, ...p.series.map((s) => ({ label: s.label, stroke: s.stroke, width: 1.5, scale: s.scale ?? 'y', spanGaps: false, points: { show: p.points ?? true }, ...(s.value ? { value: (_u: uPlot, v: number | null) => s.value!(v) } : {}) }))],
      axes: [
        { stroke: '#8892a0', grid: { stroke: '#2a3140' } },
        ...scales.map((sc, i) => ({
          scale: sc, side: i === 0 ? 3 : 1, stroke: '#8892a0', grid: { show: i === 0, stroke: '#2a3140' }, size: 56,
          ...(p.axes?.[sc] ? { values: (_u: uPlot, vs: number[]) => vs.map(p.axes![sc]!) } : {}),
        })),
      ],
    };
    plot.current = new uPlot(opts, p.data, el.current!);
    return () => { plot.current?.destroy(); plot.current = null; };
  // The chart is built once; data flows in through setData below.
  }, []);
  useEffect(() => { plot.current?.setData(p.data); }, [p.data]);
  useEffect(() => { plot.current?.setSize({ width: p.width, height: p.height }); }, [p.width, p.height]);
  return <div ref={el} class="chart" data-testid={p.testid} />;
}
