/**
 * The dashboard's state is the URL hash, `#/view?key=value…`, so any view can be shared as a link
 * (the token is never part of it). Ranges are relative (`range=24h`) or pinned (`from`, `to` in ms).
 */

export type View = 'overview' | 'endpoint' | 'alerts' | 'compare';

export const VIEWS: ReadonlyArray<{ view: View; label: string }> = [
  { view: 'overview', label: 'Overview' },
  { view: 'endpoint', label: 'Endpoint' },
  { view: 'alerts', label: 'Alerts' },
  { view: 'compare', label: 'Compare' },
];

export interface Route {
  view: View;
  params: URLSearchParams;
}

export const RANGES: ReadonlyArray<{ key: string; label: string; ms: number }> = [
  { key: '1h', label: 'last hour', ms: 3_600_000 },
  { key: '6h', label: 'last 6 hours', ms: 6 * 3_600_000 },
  { key: '24h', label: 'last 24 hours', ms: 24 * 3_600_000 },
  { key: '7d', label: 'last 7 days', ms: 7 * 86_400_000 },
  { key: '30d', label: 'last 30 days', ms: 30 * 86_400_000 },
];

/** Reads the route from a hash like `#/endpoint?service=api&endpoint=GET%20%2Ffeed`. */
export function parseHash(hash: string): Route {
  const text = hash.startsWith('#') ? hash.slice(1) : hash;
  const [pathPart = '', query = ''] = text.split(/\?(.*)/s, 2);
  const name = pathPart.replace(/^\//, '');
  const view = (VIEWS.find((v) => v.view === name)?.view ?? 'overview') as View;
  return { view, params: new URLSearchParams(query) };
}

/** The hash of a route. */
export function formatHash(view: View, params: URLSearchParams): string {
  const query = params.toString();
  return `#/${view}${query ? `?${query}` : ''}`;
}

/** The time range of a route, ms since the epoch, `to` exclusive. */
export function rangeOf(params: URLSearchParams, now: number): { from: number; to: number; pinned: boolean } {
  const from = Number(params.get('from'));
  const to = Number(params.get('to'));
  if (params.get('from') && params.get('to') && Number.isFinite(from) && Number.isFinite(to) && from < to) {
    return { from, to, pinned: true };
  }
  const range = RANGES.find((r) => r.key === params.get('range')) ?? RANGES[2];
  // One minute past now, rounded to the minute: the current minute is included, and two views
  // opened in the same minute ask the same question.
  const end = Math.ceil((now + 1) / 60_000) * 60_000;
  return { from: end - (range?.ms ?? 86_400_000), to: end, pinned: false };
}

/** Copy of params with some keys set (undefined deletes). */
export function withParams(params: URLSearchParams, changes: Record<string, string | undefined>): URLSearchParams {
  const next = new URLSearchParams(params);
  for (const [key, value] of Object.entries(changes)) {
    if (value === undefined || value === '') next.delete(key);
    else next.set(key, value);
  }
  return next;
}
