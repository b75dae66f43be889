/**
 * The read API client. The read token lives in sessionStorage (gone when the tab closes, never in
 * a URL, a cookie or a log) and goes out only as `Authorization: Bearer` to this origin.
 */
import type { Metric } from './format';

const TOKEN_KEY = 'ergometer.readToken';

export function getToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token: string): void {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken(): void {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** An answer other than 200: its status, and the API's code and message when it sent one. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Called on any 401: the page drops the token and shows the login. */
let onUnauthorized: () => void = () => undefined;

export function setUnauthorizedHandler(handler: () => void): void {
  onUnauthorized = handler;
}

/** GET a read route with the token; resolves with the parsed JSON. */
export async function apiGet<T>(route: string, params: Record<string, string | number | undefined> = {}): Promise<T> {
  return apiGetWith<T>(getToken(), route, params);
}

/**
 * GET with an explicit token. The login form checks a token this way before keeping it, with
 * `checkOnly` so that a 401 is its answer to show, not a reason to reset the page.
 */
export async function apiGetWith<T>(
  token: string | null,
  route: string,
  params: Record<string, string | number | undefined> = {},
  checkOnly = false,
): Promise<T> {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params))
    if (value !== undefined && value !== '') query.set(key, String(value));
  const text = query.toString();
  const headers: Record<string, string> = { accept: 'application/json' };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const response = await fetch(`${route}${text ? `?${text}` : ''}`, {
    headers,
    credentials: 'omit',
    cache: 'no-store',
  });
  if (!response.ok) {
    let code = 'ERGOMETER_HTTP';
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = (await response.json()) as { error?: { code?: string; message?: string } };
      if (body.error?.code) code = body.error.code;
      if (body.error?.message) message = body.error.message;
    } catch {
      // Not JSON: keep the status line.
    }
    if (response.status === 401 && !checkOnly) onUnauthorized();
    throw new ApiError(response.status, code, message);
  }
  return (await response.json()) as T;
}

export interface ServiceInfo {
  service: string;
  firstSeen: number;
  lastSeen: number;
  samples: number;
  metrics: Metric[];
}

export interface EndpointStats {
  endpoint: string;
  metric: Metric;
  samples: number;
  requests: number;
  costMean: number;
  costP50: number;
  costP95: number;
  wallP50: number;
  wallP95: number;
  dbMs: number;
  cacheMs: number;
  httpMs: number;
  share: number;
}

export interface CommitInfo {
  commit: string;
  firstSeen: number;
  lastSeen: number;
  samples: number;
  requests: number;
  deployedAt: number | null;
}

export interface Deploy {
  service: string;
  commit: string;
  ts: number;
}

export interface TimeseriesPoint {
  bucket: number;
  commit: string;
  endpoint: string;
  hostClass: string;
  metric: Metric;
  samples: number;
  requests: number;
  costMean: number;
  costP50: number | null;
  costP95: number | null;
  wallMean: number;
  wallP50: number | null;
  wallP95: number | null;
}

export interface Timeseries {
  bucketMs: number;
  from: number;
  to: number;
  points: TimeseriesPoint[];
}

export interface EfficiencyDay {
  day: number;
  metric: Metric;
  peakMinute: number;
  activeUsers: number;
  requests: number;
  cost: number;
  costPerUser: number;
  changePct: number | null;
}

export interface BreakdownRow {
  metric: Metric;
  samples: number;
  requests: number;
  costMean: number;
  costP50: number | null;
  costP95: number | null;
  wallP50: number | null;
  wallP95: number | null;
}

export interface Breakdown {
  endpoint: string | null;
  flags: Array<BreakdownRow & { key: string; variant: string }>;
  hostClasses: Array<BreakdownRow & { hostClass: string }>;
}

export interface Distribution {
  endpoint: string;
  commit: string | null;
  metric: Metric | null;
  samples: number;
  costMean: number | null;
  bins: Array<{ lo: number; hi: number; count: number }>;
}

export interface CompareRow {
  endpoint: string;
  metric: Metric;
  n: { baseline: number; candidate: number };
  costMean: { baseline: number; candidate: number };
  changePct: number;
  ci: [number, number];
  /** The level of `ci` (0.95 unless the detectors' config says otherwise). */
  confidence: number;
  pValue: number;
  pValueRaw: number;
  hostClasses: string[];
  /** Two commits: each side's effective number of processes, and the spread the interval was widened for. */
  processes?: { baseline: number; candidate: number; spreadPct?: number };
}

/** One look of the rollout test (GET /v1/explain). */
export interface LookVerdict {
  method: string;
  minutesAfterRollout: number;
  baselineCommit: string;
  changePct: number;
  ci: [number, number];
  confidence: number;
  n: { baseline: number; candidate: number };
  pValue: number;
  alphaShare: number;
  pForLook: number;
  alpha: number;
  threshold: { pct: number; source: string };
  spreadPct?: number;
  /** The conditions of an alert the look misses (none: it meets both). */
  missed: Array<'significance' | 'threshold'>;
  meetsConditions: boolean;
}

/** GET /v1/explain: the rollout test of one endpoint for one commit, look by look. */
export interface RolloutExplanation {
  service: string;
  commit: string;
  endpoint: string;
  rolledOutAt?: number;
  looks: LookVerdict[];
  none?: string;
}

export interface RootCause {
  function: string;
  file: string;
  line: number;
  deltaPct: number;
}

export interface AlertRecord {
  id: string;
  kind: 'rollout' | 'flag' | 'trend' | 'function';
  service: string;
  endpoint: string;
  metric: Metric;
  baseline: { commit: string; from?: number; to?: number };
  candidate: { commit: string; from?: number; to?: number };
  flag: { key: string; variant: string; control: string } | null;
  changePct: number;
  ci: [number, number];
  /** The level of `ci` (absent on alerts a collector saved before it said). */
  confidence?: number;
  pValue: number;
  n: { baseline: number; candidate: number };
  threshold?: number;
  comparison?: string;
  costMean?: { baseline: number; candidate: number };
  rootCause: RootCause[];
  summary?: string;
  status: 'open' | 'resolved';
  firstSeen: number;
  lastSeen: number;
  resolvedAt: number | null;
  resolvedBy?: string;
}

export interface FlameNode {
  name: string;
  file: string;
  line: number;
  base: number;
  head: number;
  children: FlameNode[];
}

export interface ProfileDiff {
  service: string;
  endpoint: string | null;
  metric: Metric;
  base: { commit: string; variant: string | null; profiles: number; samples: number; costPerRequest: number };
  head: { commit: string; variant: string | null; profiles: number; samples: number; costPerRequest: number };
  functions: Array<{
    function: string;
    file: string;
    line: number;
    base: { self: number; total: number };
    head: { self: number; total: number };
    deltaSelf: number;
    deltaTotal: number;
    deltaPct: number;
  }>;
  flame: FlameNode;
}
