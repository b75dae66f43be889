/**
 * Function-level cost per request and its diff between two commits or two flag variants
 * (PROFILE-CONTRACT, `GET /v1/profiles/diff`, `ergometer profile diff`).
 *
 * The profile gives shares, the request samples give absolute cost: for endpoint E,
 *   cost per request of f = (profile cost of E's samples with f [total] or ending in f [self])
 *                           / (profile cost of all of E's samples) × mean cost per request of E.
 * Without an endpoint, endpoints are merged weighted by their requests (docs/MATH.md §Profiles).
 */
import { badRequest, ErgometerError } from '../errors';
import type { Metric, ProfileEndpointRow, ProfileFunctionRow, ProfileQuery, Range, Store } from '../store/types';
import { decodeProfile, NO_REQUEST } from './decode';

/** One side of a diff: a commit, optionally restricted to one variant of a flag. */
export interface DiffSide {
  commit: string;
  /** With {@link DiffQuery.flag}: the flag's variant on this side. */
  variant?: string;
  from?: number;
  to?: number;
}

export interface DiffQuery extends Range {
  service: string;
  endpoint?: string;
  /** Flag key for a variant comparison (both sides then name a variant). */
  flag?: string;
  base: DiffSide;
  head: DiffSide;
  metric?: Metric;
}

export interface FunctionCost {
  self: number;
  total: number;
}

export interface FunctionDiff {
  function: string;
  file: string;
  line: number;
  base: FunctionCost;
  head: FunctionCost;
  deltaSelf: number;
  deltaTotal: number;
  /** deltaSelf as a percentage of the base endpoint cost per request (these sum to the endpoint change). */
  deltaPct: number;
}

export interface FlameNode {
  name: string;
  file: string;
  line: number;
  base: number;
  head: number;
  children: FlameNode[];
}

export interface DiffSideSummary {
  commit: string;
  variant: string | null;
  profiles: number;
  samples: number;
  costPerRequest: number;
}

/** The answer of `GET /v1/profiles/diff`, exactly as in PROFILE-CONTRACT. */
export interface ProfileDiff {
  service: string;
  endpoint: string | null;
  metric: Metric;
  base: DiffSideSummary;
  head: DiffSideSummary;
  functions: FunctionDiff[];
  flame: FlameNode;
}

/** Per function cost per request on one side, keyed by `name\0file\0line`. */
export interface SideCosts {
  summary: DiffSideSummary;
  functions: Map<string, FunctionCost & { function: string; file: string; line: number }>;
  /** Endpoint → its weight in the merge (requests share) and its mean cost per request (request samples). */
  scale: Map<string, { weight: number; mean: number }>;
}

/** Most profiles decoded per side for the flame graph (newest first); the function table uses every profile. */
export const MAX_FLAME_PROFILES = 200;
/** Flame nodes below this fraction of the larger root are dropped (keeps the answer small). */
const FLAME_MIN_FRACTION = 0.0005;

export function functionKey(f: { function: string; file: string; line: number }): string {
  return `${f.function}\u0000${f.file}\u0000${f.line}`;
}

function profileQuery(q: DiffQuery, side: DiffSide, metric?: Metric): ProfileQuery {
  const out: ProfileQuery = { service: q.service, commit: side.commit };
  const from = side.from ?? q.from;
  const to = side.to ?? q.to;
  if (from !== undefined) out.from = from;
  if (to !== undefined) out.to = to;
  if (q.endpoint !== undefined) out.endpoint = q.endpoint;
  if (metric !== undefined) out.metric = metric;
  if (q.flag !== undefined)
    out.flag = side.variant === undefined ? { key: q.flag } : { key: q.flag, variant: side.variant };
  return out;
}

/**
 * Mean cost per request and requests of each endpoint on one side, from the request aggregates
 * (all host classes merged, as the profile merges them).
 */
export async function endpointMeans(
  store: Store,
  q: DiffQuery,
  side: DiffSide,
  metric: Metric,
): Promise<Map<string, { mean: number; requests: number; n: number; sumCost2: number }>> {
  const pq = profileQuery(q, side, metric);
  const query: Parameters<Store['aggregates']>[0] = {
    service: q.service,
    commit: side.commit,
    metric,
    groupBy: ['endpoint', 'flag'],
    flags: q.flag === undefined ? 'none' : { key: q.flag },
  };
  if (pq.from !== undefined) query.from = pq.from;
  if (pq.to !== undefined) query.to = pq.to;
  if (q.endpoint !== undefined) query.endpoint = q.endpoint;
  const out = new Map<string, { mean: number; requests: number; n: number; sumCost2: number }>();
  for (const row of await store.aggregates(query)) {
    if (q.flag !== undefined && row.flagVariant !== side.variant) continue;
    if (row.n === 0) continue;
    out.set(row.endpoint, { mean: row.sumCost / row.n, requests: row.weight, n: row.n, sumCost2: row.sumCost2 });
  }
  return out;
}

/** The metric to compare: the caller's, else the one with most profile samples over both sides. */
async function chooseMetric(store: Store, q: DiffQuery): Promise<Metric> {
  if (q.metric !== undefined) return q.metric;
  const bySamples = new Map<Metric, number>();
  for (const side of [q.base, q.head]) {
    for (const row of await store.profileEndpoints(profileQuery(q, side))) {
      bySamples.set(row.metric, (bySamples.get(row.metric) ?? 0) + row.samples);
    }
  }
  const best = [...bySamples.entries()].sort((a, b) => b[1] - a[1])[0];
  if (!best) {
    throw new ErgometerError(
      'ERGOMETER_NOT_FOUND',
      404,
      `no profiles for service ${JSON.stringify(q.service)} at ${JSON.stringify(q.base.commit)} or ${JSON.stringify(q.head.commit)}` +
        `${q.endpoint === undefined ? '' : ` on ${JSON.stringify(q.endpoint)}`}: start the agent with profile: { enabled: true } (ERGOMETER_PROFILE=1)`,
    );
  }
  return best[0];
}

/**
 * One side's function costs per request, from the store's profile sums and request aggregates.
 * Endpoints without request samples (and `(no request)` when merging) are left out: their profile
 * cost cannot be put per request.
 */
export async function sideCosts(
  store: Store,
  q: DiffQuery,
  side: DiffSide,
  metric: Metric,
  rows?: { endpoints: ProfileEndpointRow[]; functions: ProfileFunctionRow[] },
): Promise<SideCosts> {
  const pq = profileQuery(q, side, metric);
  const endpointRows = rows?.endpoints ?? (await store.profileEndpoints(pq));
  const functionRows = rows?.functions ?? (await store.profileFunctions(pq));
  const means = await endpointMeans(store, q, side, metric);
  const usable = endpointRows.filter(
    (e) => e.cost > 0 && means.has(e.endpoint) && (q.endpoint !== undefined || e.endpoint !== NO_REQUEST),
  );
  const totalRequests = usable.reduce((sum, e) => sum + (means.get(e.endpoint)?.requests ?? 0), 0);
  const scale = new Map<string, { weight: number; mean: number }>();
  const profileCost = new Map<string, number>();
  let costPerRequest = 0;
  let samples = 0;
  let profiles = 0;
  for (const e of usable) {
    const m = means.get(e.endpoint) as { mean: number; requests: number };
    const weight = totalRequests > 0 ? m.requests / totalRequests : 1 / usable.length;
    scale.set(e.endpoint, { weight, mean: m.mean });
    profileCost.set(e.endpoint, e.cost);
    costPerRequest += weight * m.mean;
    samples += e.samples;
    profiles = Math.max(profiles, e.profiles);
  }
  const functions: SideCosts['functions'] = new Map();
  for (const f of functionRows) {
    const s = scale.get(f.endpoint);
    const cost = profileCost.get(f.endpoint);
    if (!s || !cost) continue;
    const perProfileCost = (s.weight * s.mean) / cost;
    const key = functionKey(f);
    let acc = functions.get(key);
    if (!acc) {
      acc = { function: f.function, file: f.file, line: f.line, self: 0, total: 0 };
      functions.set(key, acc);
    }
    acc.self += perProfileCost * f.selfCost;
    acc.total += perProfileCost * f.totalCost;
  }
  return {
    summary: { commit: side.commit, variant: side.variant ?? null, profiles, samples, costPerRequest },
    functions,
    scale,
  };
}

/** Strips `file://` and the directory prefix common to every absolute path (for display). */
export function shortenFiles(files: Iterable<string>): (file: string) => string {
  const strip = (f: string) => (f.startsWith('file://') ? f.slice('file://'.length) : f);
  let prefix: string[] | undefined;
  for (const raw of files) {
    const file = strip(raw);
    if (!file.startsWith('/')) continue;
    const dirs = file.split('/').slice(0, -1);
    if (prefix === undefined) prefix = dirs;
    else {
      let i = 0;
      while (i < prefix.length && i < dirs.length && prefix[i] === dirs[i]) i++;
      prefix = prefix.slice(0, i);
    }
  }
  const cut = prefix && prefix.length > 1 ? `${prefix.join('/')}/` : '';
  return (raw) => {
    const file = strip(raw);
    return cut !== '' && file.startsWith(cut) ? file.slice(cut.length) : file;
  };
}

/** Functions of both sides with their change, sorted by |deltaSelf| descending. */
export function diffFunctions(base: SideCosts, head: SideCosts): FunctionDiff[] {
  const keys = new Set([...base.functions.keys(), ...head.functions.keys()]);
  const baseCost = base.summary.costPerRequest;
  const out: FunctionDiff[] = [];
  for (const key of keys) {
    const b = base.functions.get(key);
    const h = head.functions.get(key);
    const id = (b ?? h) as { function: string; file: string; line: number };
    const bc = { self: b?.self ?? 0, total: b?.total ?? 0 };
    const hc = { self: h?.self ?? 0, total: h?.total ?? 0 };
    const deltaSelf = hc.self - bc.self;
    out.push({
      function: id.function,
      file: id.file,
      line: id.line,
      base: bc,
      head: hc,
      deltaSelf,
      deltaTotal: hc.total - bc.total,
      deltaPct: baseCost > 0 ? (deltaSelf / baseCost) * 100 : 0,
    });
  }
  return out.sort((a, b) => Math.abs(b.deltaSelf) - Math.abs(a.deltaSelf) || a.function.localeCompare(b.function));
}

interface MutableFlame {
  name: string;
  file: string;
  line: number;
  base: number;
  head: number;
  children: Map<string, MutableFlame>;
  /** Profile cost per endpoint of the side being added (scaled to cost per request at the end). */
  pending: Map<string, number>;
}

/** Adds one side's call paths (cost per request) to the merged tree, from the raw profiles. */
async function addFlameSide(
  store: Store,
  root: MutableFlame,
  q: DiffQuery,
  side: DiffSide,
  costs: SideCosts,
  metric: Metric,
  which: 'base' | 'head',
): Promise<void> {
  const pq = profileQuery(q, side, metric);
  const listQuery: Parameters<Store['listProfiles']>[0] = { service: q.service, commit: side.commit };
  if (pq.from !== undefined) listQuery.from = pq.from;
  if (pq.to !== undefined) listQuery.to = pq.to;
  const listed = (await store.listProfiles(listQuery)).filter((p) => p.metric === metric);
  // The newest MAX_FLAME_PROFILES: their profile cost per endpoint rescales to cost per request.
  const chosen = listed.slice(-MAX_FLAME_PROFILES);
  const endpointCost = new Map<string, number>();
  for (const meta of chosen) {
    const bytes = await store.getProfile(meta.id);
    if (!bytes) continue;
    let decoded: ReturnType<typeof decodeProfile>;
    try {
      decoded = decodeProfile(bytes, metric);
    } catch {
      continue; // stored before decoding was checked at ingest: its sums are not in the table either
    }
    for (const sample of decoded.samples) {
      if (!costs.scale.has(sample.endpoint)) continue;
      if (q.flag !== undefined && sample.flags[q.flag] !== side.variant) continue;
      endpointCost.set(sample.endpoint, (endpointCost.get(sample.endpoint) ?? 0) + sample.cost);
      let node = root;
      for (const f of sample.frames) {
        const id = decoded.functions[f] as { function: string; file: string; line: number };
        const key = functionKey(id);
        let child = node.children.get(key);
        if (!child) {
          child = {
            name: id.function,
            file: id.file,
            line: id.line,
            base: 0,
            head: 0,
            children: new Map(),
            pending: new Map(),
          };
          node.children.set(key, child);
        }
        child.pending.set(sample.endpoint, (child.pending.get(sample.endpoint) ?? 0) + sample.cost);
        node = child;
      }
    }
  }
  const settle = (node: MutableFlame): void => {
    for (const [endpoint, cost] of node.pending) {
      const s = costs.scale.get(endpoint) as { weight: number; mean: number };
      const total = endpointCost.get(endpoint) ?? 0;
      // Share of the endpoint's cost in the decoded profiles × its cost per request × its merge weight.
      if (total > 0) node[which] += (s.weight * s.mean * cost) / total;
    }
    node.pending.clear();
    for (const child of node.children.values()) settle(child);
  };
  for (const child of root.children.values()) settle(child);
}

function freezeFlame(node: MutableFlame, minCost: number, shorten: (f: string) => string): FlameNode {
  const children = [...node.children.values()]
    .filter((c) => Math.max(c.base, c.head) >= minCost)
    .sort((a, b) => Math.max(b.base, b.head) - Math.max(a.base, a.head))
    .map((c) => freezeFlame(c, minCost, shorten));
  return { name: node.name, file: shorten(node.file), line: node.line, base: node.base, head: node.head, children };
}

/** The whole diff: sides, functions ranked by |deltaSelf|, and the merged flame graph. */
export async function profileDiff(store: Store, q: DiffQuery): Promise<ProfileDiff> {
  if (q.flag !== undefined && (q.base.variant === undefined || q.head.variant === undefined)) {
    throw badRequest('ERGOMETER_BAD_QUERY', 'flag: a flag comparison needs baseVariant and headVariant');
  }
  const metric = await chooseMetric(store, q);
  const base = await sideCosts(store, q, q.base, metric);
  const head = await sideCosts(store, q, q.head, metric);
  const functions = diffFunctions(base, head);
  const root: MutableFlame = {
    name: '(root)',
    file: '',
    line: 0,
    base: base.summary.costPerRequest,
    head: head.summary.costPerRequest,
    children: new Map(),
    pending: new Map(),
  };
  await addFlameSide(store, root, q, q.base, base, metric, 'base');
  await addFlameSide(store, root, q, q.head, head, metric, 'head');
  const shorten = shortenFiles(functions.map((f) => f.file));
  for (const f of functions) f.file = shorten(f.file);
  const flame = freezeFlame(root, FLAME_MIN_FRACTION * Math.max(root.base, root.head), shorten);
  return {
    service: q.service,
    endpoint: q.endpoint ?? null,
    metric,
    base: base.summary,
    head: head.summary,
    functions,
    flame,
  };
}
