/**
 * Overview of one service: every endpoint's cost per request, share of the service's cost,
 * requests, wall and backend times, a sparkline of cost per request with rollouts marked; then
 * the efficiency figure (cost per active user at the peak minute) and its daily trend.
 */
import { apiGet, type EfficiencyDay, type EndpointStats, type Timeseries } from '../api';
import { COLORS, sparkline, timeChart } from '../chart';
import type { ViewContext } from '../context';
import { h, hashHref, numberCell, replaceChildren } from '../dom';
import { axisUnit, formatCost, formatCount, formatMs, formatPct, formatShare, formatTime } from '../format';
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
import { chartWidth, rollouts, section } from './common';

/** Sparklines are drawn for the endpoints with the largest share; beyond, the row has none (keeps the page light). */
const SPARKLINE_ENDPOINTS = 60;

/** The sortable columns of the endpoint table, in table order; `sort` in the URL names one. */
const ENDPOINT_COLUMNS: ReadonlyArray<SortColumn<EndpointStats>> = [
  { key: 'endpoint', label: 'endpoint', value: (e) => e.endpoint, firstDirection: 'ascending' },
  ...(
    [
      ['costMean', 'cost / request'],
      ['share', 'share'],
      ['requests', 'requests'],
      ['wallP50', 'wall p50'],
      ['wallP95', 'wall p95'],
      ['dbMs', 'db'],
      ['cacheMs', 'cache'],
      ['httpMs', 'http'],
    ] as const
  ).map(
    ([key, label]): SortColumn<EndpointStats> => ({
      key,
      label,
      value: (e) => e[key],
      firstDirection: 'descending',
      attrs: { class: 'num' },
    }),
  ),
];
const DEFAULT_SORT: SortState = { key: 'share', direction: 'descending' };

/**
 * Sparklines need a few dozen points: about 48 buckets whatever the range, in whole hours from an
 * hour up, so that the store answers from its hourly aggregates (bench/src/dashboard.ts replays this).
 */
export function sparklineBucketMs(from: number, to: number): number {
  const minutes = Math.max(1, Math.ceil((to - from) / 48 / 60_000));
  return minutes >= 60 ? Math.ceil(minutes / 60) * 3_600_000 : minutes * 60_000;
}

export async function renderOverview(main: HTMLElement, ctx: ViewContext): Promise<void> {
  const { service, metric, from, to } = ctx;
  const range = { from, to };
  const sparkBucketMs = sparklineBucketMs(from, to);
  const [endpoints, series, roll, efficiency] = await Promise.all([
    apiGet<EndpointStats[]>('/v1/endpoints', { service, metric, ...range }),
    // Means only: merging every bucket's histograms for quantiles the sparklines do not draw was
    // most of this view's wait over millions of samples (6 s of 6.6 s over 10 M samples).
    apiGet<Timeseries>('/v1/timeseries', {
      service,
      metric,
      groupBy: 'endpoint',
      bucketMs: sparkBucketMs,
      quantiles: 'none',
      ...range,
    }),
    rollouts(ctx),
    // The efficiency panel is optional: its failure must not take the endpoint table with it.
    apiGet<EfficiencyDay[]>('/v1/efficiency', { service, from: Math.min(from, to - 14 * 86_400_000), to }).catch(
      (caught: unknown) => (caught instanceof Error ? caught : new Error(String(caught))),
    ),
  ]);
  if (!ctx.current()) return;
  const rows = endpoints.filter((e) => metric === undefined || e.metric === metric).sort((a, b) => b.share - a.share);
  const byEndpoint = new Map<string, Array<{ x: number; y: number }>>();
  for (const p of series.points) {
    const list = byEndpoint.get(p.endpoint) ?? [];
    list.push({ x: p.bucket, y: p.costMean });
    byEndpoint.set(p.endpoint, list);
  }

  // Sparklines for the endpoints with the largest share, whatever the order the table is sorted in.
  const withSparkline = new Set(rows.slice(0, SPARKLINE_ENDPOINTS).map((e) => e.endpoint));
  const caption = `${rows.length} endpoint${rows.length === 1 ? '' : 's'} of ${service}, ${formatTime(from)} to ${formatTime(to)}; cost per request in ${metric === 'instructions' ? 'instructions' : 'CPU time'}`;
  const buildTable = (sort: SortState, onSort: (next: SortState) => void): HTMLTableElement => {
    const table = sortableTableShell('endpoints', caption, sort, [
      ...ENDPOINT_COLUMNS.map((column) => sortableHeader(column, sort, onSort)),
      h('th', { scope: 'col' }, 'cost / request over time'),
    ]);
    const body = h('tbody', {});
    for (const e of sortRows(rows, ENDPOINT_COLUMNS, sort)) {
      const link = h(
        'a',
        {
          href: hashHref('endpoint', {
            service,
            endpoint: e.endpoint,
            metric: ctx.params.get('metric') ?? undefined,
            range: ctx.params.get('range') ?? undefined,
            from: ctx.params.get('from') ?? undefined,
            to: ctx.params.get('to') ?? undefined,
          }),
          class: 'endpoint-link',
        },
        e.endpoint,
      );
      const points = byEndpoint.get(e.endpoint) ?? [];
      const spark =
        withSparkline.has(e.endpoint) && points.length > 0
          ? sparkline(points, roll.markers, from, to, { label: `cost per request of ${e.endpoint} over time` })
          : null;
      body.append(
        h(
          'tr',
          { 'data-endpoint': e.endpoint },
          h('th', { scope: 'row', class: 'endpoint' }, link),
          numberCell(formatCost(e.costMean, e.metric), e.costMean, { 'data-col': 'costMean' }),
          numberCell(formatShare(e.share), e.share, { 'data-col': 'share' }),
          numberCell(formatCount(e.requests), e.requests, { 'data-col': 'requests' }),
          numberCell(formatMs(e.wallP50), e.wallP50, { 'data-col': 'wallP50' }),
          numberCell(formatMs(e.wallP95), e.wallP95, { 'data-col': 'wallP95' }),
          numberCell(formatMs(e.dbMs), e.dbMs, { 'data-col': 'dbMs' }),
          numberCell(formatMs(e.cacheMs), e.cacheMs, { 'data-col': 'cacheMs' }),
          numberCell(formatMs(e.httpMs), e.httpMs, { 'data-col': 'httpMs' }),
          h('td', { class: 'spark' }, spark),
        ),
      );
    }
    table.append(body);
    return table;
  };
  const table = rebuildOnSort(parseSort(ctx.params.get('sort'), ENDPOINT_COLUMNS, DEFAULT_SORT), buildTable, (next) =>
    ctx.setParams({ sort: formatSort(next) }),
  );

  const rolloutList = h('ul', { class: 'rollouts' });
  for (const m of roll.markers.filter((m) => m.ts >= from && m.ts < to)) {
    rolloutList.append(h('li', {}, h('span', { class: 'commit' }, m.label), ` ${formatTime(m.ts)}`));
  }

  const days = efficiency instanceof Error ? [] : efficiency.filter((d) => metric === undefined || d.metric === metric);
  const last = days[days.length - 1];
  const effBody = h('div', { class: 'efficiency' });
  if (efficiency instanceof Error) {
    effBody.append(h('p', { class: 'error' }, `Could not compute the efficiency figure: ${efficiency.message}`));
  } else if (!last) {
    effBody.append(
      h(
        'p',
        { class: 'empty' },
        'No active-user counts in this range: the agent sends them when userId is configured (docs/agent.md).',
      ),
    );
  } else {
    effBody.append(
      h(
        'p',
        { class: 'figure', id: 'efficiency-figure', 'data-value': String(last.costPerUser) },
        h('strong', {}, formatCost(last.costPerUser, last.metric)),
        ` per active user at the peak minute of ${formatTime(last.day).slice(0, 10)} (${formatCount(last.activeUsers)} users, ${formatCount(last.requests)} requests that minute)`,
        last.changePct === null ? '' : `, ${formatPct(last.changePct)} on the day before`,
      ),
    );
    if (days.length > 1) {
      const target = h('div', { class: 'chart', id: 'efficiency-chart' });
      effBody.append(target);
      const unit = axisUnit(last.metric);
      queueMicrotask(() =>
        timeChart(target, {
          width: chartWidth(main),
          height: 180,
          xs: days.map((d) => d.day),
          series: [
            {
              label: 'cost per active user',
              color: COLORS.mean,
              values: days.map((d) => d.costPerUser / unit.divisor),
            },
          ],
          yLabel: unit.label,
        }),
      );
    }
  }

  replaceChildren(
    main,
    h('h1', {}, service),
    section(
      'Endpoints',
      'overview-endpoints',
      rows.length === 0 ? h('p', { class: 'empty' }, 'No samples in this range. Choose a longer range above.') : table,
    ),
    section(
      'Rollouts in range',
      'overview-rollouts',
      rolloutList.childElementCount ? rolloutList : h('p', { class: 'empty' }, 'None.'),
    ),
    section('Efficiency: CPU per active user', 'overview-efficiency', effBody),
  );
}
