/** Number formatting for the dashboard. Costs are in the metric's units: CPU ns or instructions. */

export type Metric = 'instructions' | 'cpu_ns';

/** Three significant digits, no exponent for ordinary sizes. */
export function sig3(value: number): string {
  if (!Number.isFinite(value)) return '–';
  if (value === 0) return '0';
  const abs = Math.abs(value);
  if (abs >= 1000) return Math.round(value).toString();
  return Number(value.toPrecision(3)).toString();
}

/**
 * A cost per request: CPU ns shown as µs or ms, instructions as K/M/G instructions.
 * E.g. 1234567 cpu_ns → "1.23 ms", 2_500_000 instructions → "2.50 M instr".
 */
export function formatCost(value: number | null | undefined, metric: Metric | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–';
  if (metric === 'instructions') {
    const [div, unit] = value >= 1e9 ? [1e9, 'G'] : value >= 1e6 ? [1e6, 'M'] : value >= 1e3 ? [1e3, 'K'] : [1, ''];
    return `${(value / div).toFixed(2)} ${unit}instr`;
  }
  if (value >= 1e6) return `${(value / 1e6).toFixed(2)} ms`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(2)} µs`;
  return `${value.toFixed(0)} ns`;
}

/** Milliseconds of wall or backend time: "12.3 ms". */
export function formatMs(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–';
  return `${value < 10 ? value.toFixed(2) : value.toFixed(1)} ms`;
}

/** A share 0..1 as "12.3%". */
export function formatShare(value: number): string {
  return `${(value * 100).toFixed(1)}%`;
}

/** A signed change in percent: "+3.10%". */
export function formatPct(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–';
  return `${value > 0 ? '+' : ''}${value.toFixed(2)}%`;
}

/** A p-value: "3.2e-9" below 1e-4, else two significant digits. */
/** An interval's level as its label says it: 0.95 → "95%". */
export function formatLevel(confidence: number): string {
  return `${+(confidence * 100).toFixed(1)}%`;
}

export function formatP(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–';
  return value < 1e-4 ? value.toExponential(1) : value.toPrecision(2);
}

/** An integer count with thousands separators: "12,345". */
export function formatCount(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

/** A time as "2026-11-27 05:50 UTC". */
export function formatTime(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–';
  return `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/** The unit a chart axis shows for a metric, and the divisor from metric units. */
export function axisUnit(metric: Metric | null | undefined): { label: string; divisor: number } {
  return metric === 'instructions' ? { label: 'M instructions', divisor: 1e6 } : { label: 'ms CPU', divisor: 1e6 };
}
