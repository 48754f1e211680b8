// The four time-series charts (uPlot): saved memory, KSM pages, scanning cost, exclusive cache.
// Each declares its series once; the colours go into data-colors on the container, so a test can
// look for them in the canvas pixels.
import uPlot from 'uplot';
import type { HistoryColumn } from '../../../api-types.js';
import { formatBytes, formatCount, formatShort } from './format.js';
import type { HistoryStore } from './history.js';

interface Axis {
  format: (v: number) => string;
  /** Span of the axis when every value is the same (so a flat line is drawn inside the plot). */
  flatSpan: number;
  side: 'left' | 'right';
  /** The axis reaches at least this far (ksmd's share of a core: 100%, so its line never lies on the scan rate's). */
  atLeast?: number;
  /** Tick steps (bytes: round binary sizes). */
  incrs?: number[];
}

interface Line {
  label: string;
  column: HistoryColumn;
  color: string;
  scale: string;
  /** Factor from the column's unit to the axis unit (ratio → percent). */
  factor?: number;
  fill?: boolean;
}

interface ChartSpec {
  name: string;
  axes: Record<string, Axis>;
  lines: Line[];
}

/** 1, 2, 5, 10, 20, 50, 100, 200, 500 of each binary unit: ticks at "64 MiB", not "95.4 MiB". */
const BYTE_STEPS = [1, 1024, 1024 ** 2, 1024 ** 3, 1024 ** 4].flatMap((u) => [1, 2, 5, 10, 20, 50, 100, 200, 500].map((m) => m * u));
const bytes: Axis = { format: formatBytes, flatSpan: 1 << 20, side: 'left', incrs: BYTE_STEPS };
const pages: Axis = { format: formatShort, flatSpan: 100, side: 'left' };

export const CHARTS: ChartSpec[] = [
  { name: 'saved', axes: { bytes }, lines: [{ label: 'saved', column: 'saved_bytes', color: '#2563eb', scale: 'bytes', fill: true }] },
  {
    name: 'pages',
    axes: { pages },
    lines: [
      { label: 'shared', column: 'pages_shared', color: '#7c3aed', scale: 'pages' },
      { label: 'sharing', column: 'pages_sharing', color: '#16a34a', scale: 'pages' },
      { label: 'volatile', column: 'pages_volatile', color: '#ea580c', scale: 'pages' },
    ],
  },
  {
    name: 'scan',
    axes: { rate: { format: formatShort, flatSpan: 100, side: 'left' }, pct: { format: (v) => `${formatShort(v)}%`, flatSpan: 100, side: 'right', atLeast: 100 } },
    lines: [
      { label: 'scanned/s', column: 'scan_pages_per_second', color: '#0891b2', scale: 'rate' },
      { label: 'ksmd CPU', column: 'ksmd_cpu_ratio', color: '#dc2626', scale: 'pct', factor: 100 },
    ],
  },
  { name: 'cache', axes: { bytes }, lines: [{ label: 'reclaimed since the agent started', column: 'cache_bytes_reclaimed', color: '#9333ea', scale: 'bytes', fill: true }] },
];

/** Zero in view, a little room above and below, and a usable span for a flat series. */
function range(axis: Axis): uPlot.Range.Function {
  return (_u, min, max) => {
    const lo = Math.min(0, Number.isFinite(min) ? min : 0);
    const hi = Math.max(0, axis.atLeast ?? 0, Number.isFinite(max) ? max : 0);
    const span = hi - lo > 0 ? hi - lo : axis.flatSpan;
    return [lo - span * 0.04, hi + span * 0.1];
  };
}

const LEGEND_PX = 34;

/** A time tick: hours and minutes, with seconds when the chart spans under 10 minutes. */
function clock(t: number, u: uPlot): string {
  const x = u.scales['x'];
  const span = (x?.max ?? 0) - (x?.min ?? 0);
  return new Date(t * 1000).toLocaleTimeString('en-GB', { hour12: false, hour: '2-digit', minute: '2-digit', ...(span < 600 ? { second: '2-digit' } : {}) });
}

function newest(values: uPlot.AlignedData[number] | undefined): number | null {
  if (values === undefined) return null;
  for (let i = values.length - 1; i >= 0; i--) {
    const v = values[i];
    if (v !== null && v !== undefined) return v;
  }
  return null;
}

export class TimeChart {
  private readonly plot: uPlot;

  constructor(
    private readonly spec: ChartSpec,
    private readonly container: HTMLElement,
  ) {
    container.dataset.colors = spec.lines.map((l) => l.color).join(',');
    const scales: uPlot.Scales = { x: { time: true } };
    const axes: uPlot.Axis[] = [{ stroke: '#5d6878', space: 70, grid: { stroke: '#eef0f4' }, values: (u, splits) => splits.map((v) => clock(v, u)) }];
    for (const [key, a] of Object.entries(spec.axes)) {
      scales[key] = { range: range(a) };
      axes.push({
        scale: key,
        side: a.side === 'left' ? 3 : 1,
        stroke: '#5d6878',
        size: 72,
        ...(a.incrs === undefined ? {} : { incrs: a.incrs }),
        grid: { show: a.side === 'left', stroke: '#eef0f4' },
        values: (_u, splits) => splits.map((v) => (v < 0 ? '' : a.format(v))),
      });
    }
    const series: uPlot.Series[] = [{}];
    for (const l of spec.lines) {
      const axis = spec.axes[l.scale] as Axis;
      const show = (v: number) => (l.column.startsWith('pages') ? formatCount(v) : axis.format(v));
      series.push({
        label: l.label,
        scale: l.scale,
        stroke: l.color,
        width: 2,
        ...(l.fill === true ? { fill: `${l.color}22` } : {}),
        // Without the cursor on the plot the legend shows the newest value.
        value: (u, v, sidx, idx) => {
          const shown = idx === null ? newest(u.data[sidx]) : v;
          return shown === null || shown === undefined ? '–' : show(shown);
        },
      });
    }
    const opts: uPlot.Options = {
      width: Math.max(200, container.clientWidth),
      height: Math.max(120, container.clientHeight - LEGEND_PX),
      scales,
      axes,
      series,
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
    };
    this.plot = new uPlot(opts, [[]], container);
    new ResizeObserver(() => this.plot.setSize({ width: Math.max(200, container.clientWidth), height: Math.max(120, container.clientHeight - LEGEND_PX) })).observe(container);
  }

  update(h: HistoryStore): void {
    const data: uPlot.AlignedData = [
      h.times(),
      ...this.spec.lines.map((l) => h.columns[l.column].map((v) => (v === null ? null : v * (l.factor ?? 1)))),
    ];
    this.plot.setData(data);
    this.container.dataset.points = String(h.size);
  }
}
