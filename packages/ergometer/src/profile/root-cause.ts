/**
 * Root cause of an endpoint's change (docs/detectors.md §"Root cause and wrappers").
 *
 * A regression inside `renderFeed`, reached through `middleware → asyncWrapper → renderFeed`, raises
 * the total cost of all three by the same amount: ranking by total smears it over the wrappers,
 * ranking by self misses a change spread over a callee tree. The rule: among the functions whose
 * total-cost change explains at least {@link EXPLAIN_FRACTION} of the endpoint's change, take the
 * deepest (the one with the smallest total cost: a callee's total never exceeds its caller's); it
 * and its share lead the list. Then the functions with the largest self-cost increases follow, each
 * explaining at least {@link MIN_FURTHER_FRACTION} of the change.
 * With EXPLAIN_FRACTION > ½, two functions on separate call paths cannot both qualify (their
 * changes would add up to more than the whole), so "deepest" is well defined.
 */
import type { Alert, RootCause } from '../detect/alert';
import type { Store } from '../store/types';
import { isNativeFrame } from './decode';
import { type DiffQuery, diffFunctions, type FunctionDiff, shortenFiles, sideCosts } from './diff';

/** A function must explain this fraction of the endpoint's change to be named its cause. */
export const EXPLAIN_FRACTION = 0.6;
/** Further entries (by self-cost increase) must explain at least this fraction of the change: noise stays out. */
export const MIN_FURTHER_FRACTION = 0.1;
/** Entries in an alert's rootCause. */
export const ROOT_CAUSE_LIMIT = 5;

/**
 * Picks the root cause from a diff's functions. `baseCost`/`headCost`: the endpoint's cost per
 * request on each side. deltaPct: the function's change in % of the base endpoint cost (total for
 * the first entry, self for the others).
 */
export function pickRootCause(functions: readonly FunctionDiff[], baseCost: number, headCost: number): RootCause[] {
  const change = headCost - baseCost;
  if (!(baseCost > 0) || !(change > 0)) return [];
  const pct = (delta: number) => (delta / baseCost) * 100;
  const out: RootCause[] = [];
  // Native frames (no script) have no self cost (decode.ts, selfFrame) and are not named: their work
  // belongs to the JavaScript that called them, which explains the same change.
  const explaining = functions
    .filter((f) => f.deltaTotal >= EXPLAIN_FRACTION * change && !isNativeFrame(f))
    .sort((a, b) => a.head.total - b.head.total);
  const deepest = explaining[0];
  if (deepest) {
    out.push({ function: deepest.function, file: deepest.file, line: deepest.line, deltaPct: pct(deepest.deltaTotal) });
  }
  for (const f of [...functions].sort((a, b) => b.deltaSelf - a.deltaSelf)) {
    if (out.length >= ROOT_CAUSE_LIMIT || !(f.deltaSelf >= MIN_FURTHER_FRACTION * change)) break;
    if (f === deepest) continue;
    out.push({ function: f.function, file: f.file, line: f.line, deltaPct: pct(f.deltaSelf) });
  }
  return out;
}

/**
 * The rootCause of a rollout or flag alert, from the profiles of its two sides (same commits,
 * windows and flag variants as the alert). Empty when either side has no profile.
 */
export async function rootCauseOf(store: Store, alert: Alert): Promise<RootCause[]> {
  const query: DiffQuery = {
    service: alert.service,
    endpoint: alert.endpoint,
    metric: alert.metric,
    base: { commit: alert.baseline.commit },
    head: { commit: alert.candidate.commit },
  };
  for (const [side, from] of [
    [query.base, alert.baseline],
    [query.head, alert.candidate],
  ] as const) {
    if (from.from !== undefined) side.from = from.from;
    if (from.to !== undefined) side.to = from.to;
  }
  if (alert.kind === 'flag' && alert.flag) {
    query.flag = alert.flag.key;
    query.base.variant = alert.flag.control;
    query.head.variant = alert.flag.variant;
  }
  const base = await sideCosts(store, query, query.base, alert.metric);
  const head = await sideCosts(store, query, query.head, alert.metric);
  if (base.summary.samples === 0 || head.summary.samples === 0) return [];
  const functions = diffFunctions(base, head);
  const shorten = shortenFiles(functions.map((f) => f.file));
  return pickRootCause(functions, base.summary.costPerRequest, head.summary.costPerRequest).map((c) => ({
    ...c,
    file: shorten(c.file),
  }));
}
