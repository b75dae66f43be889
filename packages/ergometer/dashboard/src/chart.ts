/**
 * Charts: uPlot for the time series and the distributions (fast on thousands of points, ~50 KB),
 * and a hand-drawn canvas sparkline for table rows (dozens of tiny charts cost nothing that way).
 * Labels drawn on canvas (commit names) are pixels, never markup.
 */
import uPlot from 'uplot';

export const COLORS = {
  mean: '#1f5fbf',
  p50: '#2e9e6a',
  p95: '#d9822b',
  a: '#1f5fbf',
  b: '#c23b3b',
  marker: '#7a4fb5',
  grid: '#e3e6eb',
  text: '#3b4350',
};

export interface Marker {
  /** ms since the epoch. */
  ts: number;
  label: string;
}

/** A sparkline on a canvas: one line over [from, to], rollouts as vertical ticks. */
export function sparkline(
  points: Array<{ x: number; y: number }>,
  markers: Marker[],
  from: number,
  to: number,
  options: { width?: number; height?: number; label: string },
): HTMLCanvasElement {
  const width = options.width ?? 140;
  const height = options.height ?? 28;
  const ratio = window.devicePixelRatio || 1;
  const canvas = document.createElement('canvas');
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  canvas.setAttribute('role', 'img');
  canvas.setAttribute('aria-label', options.label);
  const ctx = canvas.getContext('2d');
  if (!ctx) return canvas;
  ctx.scale(ratio, ratio);
  const ys = points.map((p) => p.y).filter(Number.isFinite);
  const min = Math.min(...ys);
  const max = Math.max(...ys);
  const span = max - min || Math.abs(max) || 1;
  const x = (ts: number) => ((ts - from) / (to - from || 1)) * (width - 2) + 1;
  const y = (v: number) => height - 3 - ((v - min) / span) * (height - 6);
  ctx.strokeStyle = COLORS.marker;
  ctx.lineWidth = 1;
  for (const m of markers) {
    if (m.ts < from || m.ts >= to) continue;
    const px = Math.round(x(m.ts)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(px, 0);
    ctx.lineTo(px, height);
    ctx.stroke();
  }
  ctx.strokeStyle = COLORS.mean;
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  let started = false;
  for (const p of points) {
    if (!Number.isFinite(p.y)) continue;
    if (started) ctx.lineTo(x(p.x), y(p.y));
    else ctx.moveTo(x(p.x), y(p.y));
    started = true;
  }
  ctx.stroke();
  return canvas;
}

/** A uPlot hook that draws markers (commit rollouts) as dashed verticals with their labels. */
function markerPlugin(markers: Marker[]): uPlot.Plugin {
  return {
    hooks: {
      draw: [
        (u: uPlot) => {
          const { ctx } = u;
          const { top, height } = u.bbox;
          ctx.save();
          ctx.strokeStyle = COLORS.marker;
          ctx.fillStyle = COLORS.marker;
          ctx.lineWidth = Math.max(1, devicePixelRatio);
          ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
          ctx.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
          let row = 0;
          for (const m of markers) {
            const px = u.valToPos(m.ts / 1000, 'x', true);
            if (!(px >= u.bbox.left && px <= u.bbox.left + u.bbox.width)) continue;
            ctx.beginPath();
            ctx.moveTo(px, top);
            ctx.lineTo(px, top + height);
            ctx.stroke();
            // Labels alternate rows so that close rollouts stay readable; long names are cut.
            const label = m.label.length > 24 ? `${m.label.slice(0, 23)}…` : m.label;
            ctx.fillText(label, px + 3 * devicePixelRatio, top + (12 + 13 * (row % 3)) * devicePixelRatio);
            row++;
          }
          ctx.restore();
        },
      ],
    },
  };
}

/** A time chart: x in ms, one or more y series (null gaps allowed), optional markers. */
export function timeChart(
  target: HTMLElement,
  options: {
    width: number;
    height: number;
    xs: number[];
    series: Array<{ label: string; color: string; values: Array<number | null>; dash?: number[] }>;
    yLabel: string;
    markers?: Marker[];
  },
): uPlot {
  const opts: uPlot.Options = {
    width: options.width,
    height: options.height,
    scales: { x: { time: true } },
    axes: [
      { stroke: COLORS.text, grid: { stroke: COLORS.grid } },
      { stroke: COLORS.text, grid: { stroke: COLORS.grid }, label: options.yLabel, size: 60 },
    ],
    series: [
      {
        label: 'time (UTC)',
        value: (_u, v) => (v === null ? '–' : new Date(v * 1000).toISOString().slice(0, 16).replace('T', ' ')),
      },
      ...options.series.map((s) => {
        const series: uPlot.Series = { label: s.label, stroke: s.color, width: 2, spanGaps: false };
        if (s.dash) series.dash = s.dash;
        return series;
      }),
    ],
    plugins: options.markers ? [markerPlugin(options.markers)] : [],
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
  };
  const data: uPlot.AlignedData = [options.xs.map((x) => x / 1000), ...options.series.map((s) => s.values)];
  return new uPlot(opts, data, target);
}

/** Two histograms overlaid on a log x axis (same log-linear bins, so their edges line up). */
export function distributionChart(
  target: HTMLElement,
  options: {
    width: number;
    height: number;
    xs: number[];
    series: Array<{ label: string; color: string; values: Array<number | null> }>;
    xLabel: string;
  },
): uPlot {
  const opts: uPlot.Options = {
    width: options.width,
    height: options.height,
    scales: { x: { time: false, distr: 3 } },
    axes: [
      { stroke: COLORS.text, grid: { stroke: COLORS.grid }, label: options.xLabel },
      { stroke: COLORS.text, grid: { stroke: COLORS.grid }, label: 'share of samples', size: 60 },
    ],
    series: [
      { label: options.xLabel },
      ...options.series.map((s) => ({
        label: s.label,
        stroke: s.color,
        width: 2,
        fill: `${s.color}22`,
        paths: uPlot.paths.stepped?.({ align: 1 }),
      })),
    ],
  };
  return new uPlot(opts, [options.xs, ...options.series.map((s) => s.values)], target);
}
