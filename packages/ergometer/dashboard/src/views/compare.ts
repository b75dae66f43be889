/**
 * Compare two commits, or two variants of a flag within one commit: the per-endpoint change with
 * its confidence interval (GET /v1/compare), and the diff flame graph of the profiles
 * (GET /v1/profiles/diff), or a plain "no profiles" when there are none.
 */
import { ApiError, apiGet, type Breakdown, type CommitInfo, type CompareRow, type ProfileDiff } from '../api';
import type { ViewContext } from '../context';
import { h, hashHref, numberCell, replaceChildren } from '../dom';
import { FlameGraph } from '../flame';
import { formatCost, formatCount, formatLevel, formatP, formatPct } from '../format';
import {
  formatSort,
  parseSort,
  rebuildOnSort,
  type SortColumn,
  type SortState,
  sortableHeader,
  sortableTableShell,
  sortRows,
} from '../sort';
import { chartWidth, section, select } from './common';

/** The sortable columns of the per-endpoint table; `sort` in the URL names one. */
const COMPARE_COLUMNS: ReadonlyArray<SortColumn<CompareRow>> = [
  { key: 'endpoint', label: 'endpoint', value: (r) => r.endpoint, firstDirection: 'ascending' },
  {
    key: 'base',
    label: 'base',
    value: (r) => r.costMean.baseline,
    firstDirection: 'descending',
    attrs: { class: 'num' },
  },
  {
    key: 'head',
    label: 'head',
    value: (r) => r.costMean.candidate,
    firstDirection: 'descending',
    attrs: { class: 'num' },
  },
  {
    key: 'changePct',
    label: 'change',
    value: (r) => r.changePct,
    firstDirection: 'descending',
    attrs: { class: 'num' },
  },
  // The interval sorts by its lower end: the most surely worse first.
  // Its level (95% unless the detectors' config says otherwise) is in the table's caption.
  { key: 'ci', label: 'interval', value: (r) => r.ci[0], firstDirection: 'descending', attrs: { class: 'num' } },
  // The most significant (smallest p) first.
  { key: 'pValue', label: 'p', value: (r) => r.pValue, firstDirection: 'ascending', attrs: { class: 'num' } },
  {
    key: 'n',
    label: 'samples base / head',
    value: (r) => r.n.candidate,
    firstDirection: 'descending',
    attrs: { class: 'num' },
  },
];
const DEFAULT_SORT: SortState = { key: 'changePct', direction: 'descending' };

export async function renderCompare(main: HTMLElement, ctx: ViewContext): Promise<void> {
  const { service, params } = ctx;
  const mode = params.get('mode') === 'flag' ? 'flag' : 'commits';
  const commits = (await apiGet<CommitInfo[]>('/v1/commits', { service })).sort((a, b) => a.firstSeen - b.firstSeen);
  if (!ctx.current()) return;
  const names = commits.map((c) => c.commit);
  const endpoint = params.get('endpoint') ?? undefined;

  const modePick = select(
    'compare-mode',
    'Compare',
    [
      { value: 'commits', label: 'two commits' },
      { value: 'flag', label: 'two variants of a flag' },
    ],
    mode,
  );
  modePick.addEventListener('change', () => ctx.go('compare', { mode: modePick.value }));
  const form = h(
    'div',
    { class: 'form-row', id: 'compare-form' },
    h('label', { for: 'compare-mode' }, 'Compare'),
    modePick,
  );

  let query: Record<string, string | undefined> | null = null;
  let baseLabel = '';
  let headLabel = '';
  if (mode === 'commits') {
    const base = params.get('base') ?? names[names.length - 2];
    const head = params.get('head') ?? names[names.length - 1];
    const options = names.map((c) => ({ value: c, label: c }));
    const basePick = select('compare-base', 'Base commit', options, base);
    const headPick = select('compare-head', 'Head commit', options, head);
    basePick.addEventListener('change', () => ctx.go('compare', { base: basePick.value }));
    headPick.addEventListener('change', () => ctx.go('compare', { head: headPick.value }));
    form.append(
      h('label', { for: 'compare-base' }, 'base'),
      basePick,
      h('label', { for: 'compare-head' }, 'head'),
      headPick,
    );
    if (base && head) {
      query = { service, base, head };
      baseLabel = base;
      headLabel = head;
    }
  } else {
    const commit = params.get('commit') ?? names[names.length - 1];
    const commitPick = select(
      'compare-commit',
      'Commit',
      names.map((c) => ({ value: c, label: c })),
      commit,
    );
    commitPick.addEventListener('change', () => ctx.go('compare', { commit: commitPick.value }));
    form.append(h('label', { for: 'compare-commit' }, 'commit'), commitPick);
    const flags = commit ? (await apiGet<Breakdown>('/v1/breakdown', { service, commit })).flags : [];
    if (!ctx.current()) return;
    const keys = [...new Set(flags.map((f) => f.key))];
    const flag = params.get('flag') ?? keys[0];
    const variants = flags.filter((f) => f.key === flag).sort((a, b) => b.samples - a.samples);
    const baseVariant = params.get('baseVariant') ?? variants[0]?.variant;
    const headVariant = params.get('headVariant') ?? variants[1]?.variant;
    const flagPick = select(
      'compare-flag',
      'Flag',
      keys.map((k) => ({ value: k, label: k })),
      flag,
    );
    flagPick.addEventListener('change', () =>
      ctx.go('compare', { flag: flagPick.value, baseVariant: undefined, headVariant: undefined }),
    );
    const variantOptions = variants.map((v) => ({ value: v.variant, label: v.variant }));
    const basePick = select('compare-base-variant', 'Base variant', variantOptions, baseVariant);
    const headPick = select('compare-head-variant', 'Head variant', variantOptions, headVariant);
    basePick.addEventListener('change', () => ctx.go('compare', { baseVariant: basePick.value }));
    headPick.addEventListener('change', () => ctx.go('compare', { headVariant: headPick.value }));
    form.append(
      h('label', { for: 'compare-flag' }, 'flag'),
      flagPick,
      h('label', { for: 'compare-base-variant' }, 'base'),
      basePick,
      h('label', { for: 'compare-head-variant' }, 'head'),
      headPick,
    );
    if (commit && flag && baseVariant && headVariant) {
      query = { service, commit, flag, baseVariant, headVariant };
      baseLabel = `${flag}=${baseVariant}`;
      headLabel = `${flag}=${headVariant}`;
    }
  }
  if (endpoint) {
    const clear = h('a', { href: hashHref('compare', Object.fromEntries(withoutEndpoint(params))) }, 'all endpoints');
    form.append(
      h('span', { class: 'muted' }, 'endpoint: '),
      h('span', { class: 'endpoint', id: 'compare-endpoint' }, endpoint),
      ' (',
      clear,
      ')',
    );
  }

  if (!query) {
    replaceChildren(
      main,
      h('h1', {}, 'Compare'),
      form,
      h('p', { class: 'empty' }, 'Not enough commits or flag variants to compare yet.'),
    );
    return;
  }
  const [rows, diff] = await Promise.all([
    apiGet<CompareRow[]>('/v1/compare', query),
    profileDiff({ ...query, endpoint }),
  ]);
  if (!ctx.current()) return;

  const sides = query;
  const maxAbs = Math.max(1, ...rows.flatMap((r) => [Math.abs(r.ci[0]), Math.abs(r.ci[1])]).filter(Number.isFinite));
  // One answer, one level: the collector's detectors' confidence.
  const confidence = rows[0]?.confidence ?? 0.95;
  const caption = `Change in mean cost per request, ${baseLabel} → ${headLabel}, ${formatLevel(confidence)} intervals; p-values corrected for ${rows.length} endpoints`;
  const buildTable = (sort: SortState, onSort: (next: SortState) => void): HTMLTableElement => {
    const header = (key: string): HTMLTableCellElement =>
      sortableHeader(COMPARE_COLUMNS.find((c) => c.key === key) as SortColumn<CompareRow>, sort, onSort);
    const body = h('tbody', {});
    for (const r of sortRows(rows, COMPARE_COLUMNS, sort)) {
      const significant = r.pValue < 1 - confidence && (r.ci[0] > 0 || r.ci[1] < 0);
      body.append(
        h(
          'tr',
          {
            'data-endpoint': r.endpoint,
            class:
              [significant ? (r.changePct > 0 ? 'worse' : 'better') : '', r.endpoint === endpoint ? 'focus' : '']
                .join(' ')
                .trim() || undefined,
          },
          h(
            'th',
            { scope: 'row', class: 'endpoint' },
            h(
              'a',
              {
                href: hashHref('endpoint', {
                  service,
                  endpoint: r.endpoint,
                  a: sides.base ?? sides.commit,
                  b: sides.head ?? sides.commit,
                }),
              },
              r.endpoint,
            ),
          ),
          numberCell(formatCost(r.costMean.baseline, r.metric), r.costMean.baseline, { 'data-col': 'base' }),
          numberCell(formatCost(r.costMean.candidate, r.metric), r.costMean.candidate, { 'data-col': 'head' }),
          numberCell(formatPct(r.changePct), r.changePct, { 'data-col': 'changePct' }),
          h(
            'td',
            { class: 'num', 'data-col': 'ci', 'data-value': `${r.ci[0]},${r.ci[1]}` },
            `${formatPct(r.ci[0])} to ${formatPct(r.ci[1])}`,
          ),
          h('td', { class: 'ci-bar', 'aria-hidden': 'true' }, ciBar(r.ci, r.changePct, maxAbs)),
          numberCell(formatP(r.pValue), r.pValue, { 'data-col': 'pValue' }),
          numberCell(`${formatCount(r.n.baseline)} / ${formatCount(r.n.candidate)}`, r.n.candidate, {
            'data-col': 'n',
          }),
        ),
      );
    }
    const table = sortableTableShell('compare-table', caption, sort, [
      header('endpoint'),
      header('base'),
      header('head'),
      header('changePct'),
      header('ci'),
      h('th', { scope: 'col' }, ''),
      header('pValue'),
      header('n'),
    ]);
    table.append(body);
    return table;
  };
  const table = rebuildOnSort(parseSort(params.get('sort'), COMPARE_COLUMNS, DEFAULT_SORT), buildTable, (next) =>
    ctx.setParams({ sort: formatSort(next) }),
  );

  const profiles = section('Diff flame graph', 'compare-profiles');
  if (!diff.ok) {
    profiles.append(h('p', { class: 'empty', id: 'no-profiles' }, `No profiles for this comparison: ${diff.reason}`));
  } else {
    const d = diff.value;
    profiles.append(
      h(
        'p',
        { class: 'lede' },
        `${d.endpoint ?? 'all endpoints'}: ${formatCost(d.base.costPerRequest, d.metric)} → ${formatCost(d.head.costPerRequest, d.metric)} per request; ${d.base.profiles} + ${d.head.profiles} profiles, ${formatCount(d.base.samples)} + ${formatCount(d.head.samples)} stack samples.`,
      ),
    );
    profiles.append(new FlameGraph(d.flame, d.metric, chartWidth(main)).element);
    const fbody = h('tbody', {});
    for (const f of d.functions.slice(0, 30)) {
      fbody.append(
        h(
          'tr',
          { 'data-function': f.function },
          h('th', { scope: 'row' }, h('code', {}, f.function)),
          h('td', { class: 'name' }, f.file ? `${f.file}:${f.line}` : ''),
          numberCell(formatCost(f.base.self, d.metric), f.base.self),
          numberCell(formatCost(f.head.self, d.metric), f.head.self),
          numberCell(formatPct(f.deltaPct), f.deltaPct, { 'data-col': 'deltaPct' }),
        ),
      );
    }
    profiles.append(
      h(
        'table',
        { class: 'data', id: 'function-table' },
        h('caption', {}, 'Functions ranked by change of self cost per request (share of the base endpoint cost)'),
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            h('th', { scope: 'col' }, 'function'),
            h('th', { scope: 'col' }, 'where'),
            h('th', { scope: 'col', class: 'num' }, 'base self'),
            h('th', { scope: 'col', class: 'num' }, 'head self'),
            h('th', { scope: 'col', class: 'num' }, 'change'),
          ),
        ),
        fbody,
      ),
    );
  }

  replaceChildren(
    main,
    h('h1', {}, `Compare ${baseLabel} → ${headLabel}`),
    form,
    section(
      'Per endpoint',
      'compare-endpoints',
      rows.length === 0 ? h('p', { class: 'empty' }, 'No endpoint has samples on both sides.') : table,
      processNote(rows),
    ),
    profiles,
  );
}

function withoutEndpoint(params: URLSearchParams): URLSearchParams {
  const next = new URLSearchParams(params);
  next.delete('endpoint');
  return next;
}

/** The interval as a bar on a symmetric scale around 0, the estimate as a tick. */
/**
 * Two commits are two groups of processes: when the service's processes of the same code were seen to
 * differ, the intervals were widened for it (docs/detectors.md, "What is compared"). Says so, and on
 * how many processes a side; nothing for flag variants or when nothing was widened.
 */
function processNote(rows: readonly CompareRow[]): HTMLElement | null {
  const widened = rows.find((r) => r.processes?.spreadPct !== undefined);
  if (!widened?.processes) return null;
  const round = (x: number) => (x < 10 ? x.toFixed(1) : x.toFixed(0));
  return h(
    'p',
    { class: 'lede', id: 'process-spread' },
    `Intervals widened: processes of the same code differ by ~${(widened.processes.spreadPct ?? 0).toFixed(1)}%, ` +
      `and ${widened.endpoint} was measured on ${round(widened.processes.baseline)} vs ${round(widened.processes.candidate)} processes ` +
      '(the fewer a side, the wider).',
  );
}

function ciBar(ci: [number, number], change: number, maxAbs: number): HTMLElement {
  const pos = (v: number) => `${50 + (Math.max(-maxAbs, Math.min(maxAbs, v)) / maxAbs) * 50}%`;
  const bar = h('span', { class: 'bar' });
  const range = h('span', { class: `range ${ci[0] > 0 ? 'worse' : ci[1] < 0 ? 'better' : ''}` });
  range.style.left = pos(ci[0]);
  range.style.width = `calc(${pos(ci[1])} - ${pos(ci[0])})`;
  const tick = h('span', { class: 'tick' });
  tick.style.left = pos(change);
  bar.append(h('span', { class: 'zero' }), range, tick);
  return bar;
}

async function profileDiff(
  query: Record<string, string | undefined>,
): Promise<{ ok: true; value: ProfileDiff } | { ok: false; reason: string }> {
  try {
    // Ask for the diff only when both sides have profiles: no request bound to fail, and a plain answer.
    const sides = query.commit !== undefined ? [query.commit] : [query.base, query.head];
    const lists = await Promise.all(
      sides.map((commit) => apiGet<unknown[]>('/v1/profiles', { service: query.service, commit })),
    );
    if (lists.some((list) => list.length === 0)) {
      return {
        ok: false,
        reason: `no profile was received for ${sides.filter((_, i) => lists[i]?.length === 0).join(' and ')}. Turn the profiler on (ERGOMETER_PROFILE=1, docs/agent.md).`,
      };
    }
    const value = await apiGet<ProfileDiff>('/v1/profiles/diff', query);
    if (
      !value.flame ||
      (value.flame.base === 0 && value.flame.head === 0) ||
      value.base.profiles + value.head.profiles === 0
    ) {
      return {
        ok: false,
        reason: 'no profile covers either side. Turn the profiler on (ERGOMETER_PROFILE=1, docs/agent.md).',
      };
    }
    if (value.base.profiles === 0 || value.head.profiles === 0) {
      return { ok: false, reason: `only the ${value.base.profiles === 0 ? 'head' : 'base'} side has profiles.` };
    }
    return { ok: true, value };
  } catch (caught) {
    if (caught instanceof ApiError && caught.status === 401) throw caught;
    if (caught instanceof ApiError && caught.status === 501)
      return { ok: false, reason: 'this server has no profile diff yet (501).' };
    if (caught instanceof ApiError && caught.status === 404) return { ok: false, reason: caught.message };
    return { ok: false, reason: caught instanceof Error ? caught.message : String(caught) };
  }
}
