/**
 * One endpoint: cost per request over time (mean, p50, p95) with rollouts marked, the cost
 * distributions of two commits overlaid, the cost by flag variant and by host class, and the rollout
 * test of the second commit look by look (why it alerted or not).
 */
import {
  apiGet,
  type Breakdown,
  type BreakdownRow,
  type Distribution,
  type EndpointStats,
  type LookVerdict,
  type RolloutExplanation,
  type Timeseries,
} from '../api';
import { COLORS, distributionChart, timeChart } from '../chart';
import type { ViewContext } from '../context';
import { h, hashHref, numberCell, replaceChildren } from '../dom';
import { axisUnit, formatCost, formatCount, formatLevel, formatMs, formatP, formatPct, type Metric } from '../format';
import { chartWidth, rollouts, section, select } from './common';

export async function renderEndpoint(main: HTMLElement, ctx: ViewContext): Promise<void> {
  const { service, from, to } = ctx;
  const endpoint = ctx.params.get('endpoint');
  if (!endpoint) {
    const endpoints = await apiGet<EndpointStats[]>('/v1/endpoints', { service, metric: ctx.metric, from, to });
    if (!ctx.current()) return;
    const list = h('ul', { class: 'pick' });
    for (const e of endpoints.sort((a, b) => b.share - a.share)) {
      list.append(h('li', {}, h('a', { href: hashHref('endpoint', { service, endpoint: e.endpoint }) }, e.endpoint)));
    }
    replaceChildren(main, h('h1', {}, 'Choose an endpoint'), list);
    return;
  }
  const metric = ctx.metric;
  const range = { from, to };
  const [series, roll] = await Promise.all([
    // The chart draws the mean and the cost quantiles: the wall-time ones are not merged.
    apiGet<Timeseries>('/v1/timeseries', { service, endpoint, metric, groupBy: 'none', quantiles: 'cost', ...range }),
    rollouts(ctx),
  ]);
  if (!ctx.current()) return;
  // The two commits to overlay: chosen in the URL, else the last two seen in range with samples of this endpoint.
  const seen = [...new Set(roll.commits.filter((c) => c.lastSeen >= from && c.firstSeen < to).map((c) => c.commit))];
  const commitA = ctx.params.get('a') ?? seen[seen.length - 2] ?? seen[0];
  const commitB = ctx.params.get('b') ?? seen[seen.length - 1];
  // The rollout test reads the store once per look: asked now, beside the rest, and shown when it answers.
  const explanation = commitB
    ? apiGet<RolloutExplanation>('/v1/explain', { service, endpoint, commit: commitB })
    : undefined;
  // Handled where the section is built; until then, not an unhandled rejection.
  explanation?.catch(() => undefined);
  const [distA, distB, breakdown] = await Promise.all([
    commitA ? apiGet<Distribution>('/v1/distribution', { service, endpoint, commit: commitA, metric, ...range }) : null,
    commitB ? apiGet<Distribution>('/v1/distribution', { service, endpoint, commit: commitB, metric, ...range }) : null,
    apiGet<Breakdown>('/v1/breakdown', { service, endpoint, commit: commitB, metric, ...range }),
  ]);
  if (!ctx.current()) return;
  const usedMetric: Metric | undefined = series.points[0]?.metric ?? metric;
  const unit = axisUnit(usedMetric);

  // Time series: one x per bucket in range, null where the endpoint had no sample.
  const byBucket = new Map(series.points.map((p) => [p.bucket, p]));
  const xs: number[] = [];
  for (let x = Math.floor(series.from / series.bucketMs) * series.bucketMs; x < series.to; x += series.bucketMs)
    xs.push(x);
  const scaled = (v: number | null | undefined) => (v === null || v === undefined ? null : v / unit.divisor);
  const timeTarget = h('div', { class: 'chart', id: 'endpoint-chart' });
  const last = series.points[series.points.length - 1];
  const totalSamples = series.points.reduce((t, p) => t + p.samples, 0);
  const weightedMean = series.points.reduce((t, p) => t + p.costMean * p.samples, 0) / (totalSamples || 1);

  // Distributions: both on the same bins (log-linear, so edges coincide); each as a share of its samples.
  const distTarget = h('div', { class: 'chart', id: 'distribution-chart' });
  const binLos = [...new Set([...(distA?.bins ?? []), ...(distB?.bins ?? [])].map((b) => b.lo))].sort((a, b) => a - b);
  const shareOf = (d: Distribution | null) => {
    const counts = new Map((d?.bins ?? []).map((b) => [b.lo, b.count]));
    return binLos.map((lo) => (d && d.samples > 0 ? (counts.get(lo) ?? 0) / d.samples : null));
  };
  const commitOptions = seen.map((c) => ({ value: c, label: c }));
  const pickA = select('commit-a', 'First commit', commitOptions, commitA);
  const pickB = select('commit-b', 'Second commit', commitOptions, commitB);
  pickA.addEventListener('change', () => ctx.go('endpoint', { a: pickA.value }));
  pickB.addEventListener('change', () => ctx.go('endpoint', { b: pickB.value }));
  const distLegend = h(
    'table',
    { class: 'data compact', id: 'distribution-summary' },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        h('th', { scope: 'col' }, 'commit'),
        h('th', { scope: 'col', class: 'num' }, 'samples'),
        h('th', { scope: 'col', class: 'num' }, 'mean cost / request'),
      ),
    ),
    h(
      'tbody',
      {},
      ...[distA, distB].map((d, i) =>
        d
          ? h(
              'tr',
              { 'data-commit': d.commit ?? '' },
              h(
                'th',
                { scope: 'row' },
                h('span', { class: i === 0 ? 'swatch a' : 'swatch b' }),
                h('span', { class: 'commit' }, d.commit ?? ''),
              ),
              numberCell(formatCount(d.samples), d.samples),
              numberCell(formatCost(d.costMean, d.metric), d.costMean),
            )
          : null,
      ),
    ),
  );
  const compareLink =
    commitA && commitB && commitA !== commitB
      ? h(
          'a',
          {
            href: hashHref('compare', { service, mode: 'commits', base: commitA, head: commitB, endpoint }),
            id: 'endpoint-compare',
          },
          `Compare ${commitA} → ${commitB}`,
        )
      : null;

  replaceChildren(
    main,
    h('h1', { class: 'endpoint-title' }, endpoint),
    h(
      'p',
      { class: 'lede' },
      `${formatCount(totalSamples)} samples in range; mean cost per request ${formatCost(weightedMean, usedMetric)}`,
      last ? `; latest bucket ${formatCost(last.costMean, usedMetric)}` : '',
      '. ',
      compareLink,
    ),
    section(
      'Cost per request over time',
      'endpoint-timeseries',
      series.points.length === 0 ? h('p', { class: 'empty' }, 'No samples of this endpoint in range.') : timeTarget,
    ),
    section(
      'Distributions of two commits',
      'endpoint-distributions',
      h(
        'div',
        { class: 'form-row' },
        h('label', { for: 'commit-a' }, 'first'),
        pickA,
        h('label', { for: 'commit-b' }, 'second'),
        pickB,
      ),
      binLos.length === 0 ? h('p', { class: 'empty' }, 'No samples for these commits.') : distTarget,
      distLegend,
    ),
    section(
      `By flag variant${commitB ? ` (commit ${commitB})` : ''}`,
      'endpoint-flags',
      breakdown.flags.length === 0
        ? h('p', { class: 'empty' }, 'No flags were recorded on these requests.')
        : breakdownTable(
            'flags',
            ['flag', 'variant'],
            breakdown.flags.map((r) => ({ keys: [r.key, r.variant], row: r })),
            service,
            endpoint,
            commitB,
          ),
    ),
    commitB && explanation ? rolloutTestSection(ctx, commitB, explanation) : null,
    section(
      `By host class${commitB ? ` (commit ${commitB})` : ''}`,
      'endpoint-hosts',
      breakdownTable(
        'hosts',
        ['host class'],
        breakdown.hostClasses.map((r) => ({ keys: [r.hostClass || '(not given)'], row: r })),
        service,
        endpoint,
        undefined,
      ),
    ),
  );

  if (series.points.length > 0) {
    timeChart(timeTarget, {
      width: chartWidth(main),
      height: 300,
      xs,
      series: [
        { label: 'mean', color: COLORS.mean, values: xs.map((x) => scaled(byBucket.get(x)?.costMean)) },
        { label: 'p50', color: COLORS.p50, values: xs.map((x) => scaled(byBucket.get(x)?.costP50)) },
        { label: 'p95', color: COLORS.p95, values: xs.map((x) => scaled(byBucket.get(x)?.costP95)), dash: [6, 4] },
      ],
      yLabel: `${unit.label} per request`,
      markers: roll.markers,
    });
  }
  if (binLos.length > 0) {
    distributionChart(distTarget, {
      width: chartWidth(main),
      height: 240,
      xs: binLos.map((lo) => lo / unit.divisor),
      series: [
        { label: commitA ?? '', color: COLORS.a, values: shareOf(distA) },
        { label: commitB ?? '', color: COLORS.b, values: shareOf(distB) },
      ],
      xLabel: `${unit.label} per request`,
    });
  }
}

function breakdownTable(
  id: string,
  keyColumns: string[],
  rows: Array<{ keys: string[]; row: BreakdownRow }>,
  service: string,
  endpoint: string,
  commit: string | undefined,
): HTMLTableElement {
  const body = h('tbody', {});
  for (const { keys, row } of rows) {
    const cells = keys.map((k, i) =>
      i === 0 ? h('th', { scope: 'row', class: 'name' }, k) : h('td', { class: 'name' }, k),
    );
    // A flag variant links to the comparison of that variant against the most common one of its key.
    let link: HTMLElement | null = null;
    if (id === 'flags' && commit) {
      const control = rows.filter((r) => r.keys[0] === keys[0]).sort((a, b) => b.row.samples - a.row.samples)[0];
      if (control && control.keys[1] !== keys[1]) {
        link = h(
          'a',
          {
            href: hashHref('compare', {
              service,
              mode: 'flag',
              commit,
              flag: keys[0],
              baseVariant: control.keys[1],
              headVariant: keys[1],
              endpoint,
            }),
          },
          'compare',
        );
      }
    }
    body.append(
      h(
        'tr',
        {},
        ...cells,
        numberCell(formatCount(row.samples), row.samples, { 'data-col': 'samples' }),
        numberCell(formatCost(row.costMean, row.metric), row.costMean, { 'data-col': 'costMean' }),
        numberCell(formatCost(row.costP50, row.metric), row.costP50, { 'data-col': 'costP50' }),
        numberCell(formatCost(row.costP95, row.metric), row.costP95, { 'data-col': 'costP95' }),
        numberCell(formatMs(row.wallP95), row.wallP95, { 'data-col': 'wallP95' }),
        id === 'flags' ? h('td', {}, link) : null,
      ),
    );
  }
  return h(
    'table',
    { class: 'data', id: `breakdown-${id}` },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ...keyColumns.map((c) => h('th', { scope: 'col' }, c)),
        h('th', { scope: 'col', class: 'num' }, 'samples'),
        h('th', { scope: 'col', class: 'num' }, 'cost / request'),
        h('th', { scope: 'col', class: 'num' }, 'p50'),
        h('th', { scope: 'col', class: 'num' }, 'p95'),
        h('th', { scope: 'col', class: 'num' }, 'wall p95'),
        id === 'flags' ? h('th', { scope: 'col' }, '') : null,
      ),
    ),
    body,
  );
}

/**
 * The rollout test of `commit` at this endpoint, look by look (GET /v1/explain). It reads the store once per
 * look, so it may fill in after the rest of the view; it says when it is done with `data-ready`.
 */
function rolloutTestSection(ctx: ViewContext, commit: string, explanation: Promise<RolloutExplanation>): HTMLElement {
  const id = 'endpoint-rollout-test';
  const body = h('div', {}, h('p', { class: 'empty' }, 'Reading the looks of the rollout test…'));
  const panel = section(`Rollout test of ${commit}`, id, body);
  const done = (...children: Array<Node | string>) => {
    if (!ctx.current()) return;
    body.replaceChildren(...children);
    panel.dataset.ready = 'true';
  };
  explanation.then(
    (e) => {
      if (e.none !== undefined || e.looks.length === 0) {
        done(h('p', { class: 'empty' }, e.none ?? 'No look yet.'));
        return;
      }
      done(
        lookTable(e.looks),
        h(
          'p',
          { class: 'muted' },
          'An alert needs both at a look: p ÷ the look’s share of alpha below alpha once corrected for every test of the ' +
            'detectors’ run (which only raises it), and a change at or above the endpoint’s threshold.',
        ),
      );
    },
    (error: Error) => done(h('p', { class: 'error' }, `The rollout test could not be read: ${error.message}`)),
  );
  return panel;
}

function lookTable(looks: LookVerdict[]): HTMLTableElement {
  const level = formatLevel(looks[0]?.confidence ?? 0.95);
  const body = h('tbody', {});
  for (const look of looks) {
    const missed = look.missed.map((m) => (m === 'significance' ? 'not significant' : 'below the threshold'));
    const share = look.alphaShare < 1 ? `${+(look.alphaShare * 100).toFixed(1)}%` : 'all';
    body.append(
      h(
        'tr',
        { 'data-minutes': look.minutesAfterRollout, class: look.meetsConditions ? 'worse' : undefined },
        h('th', { scope: 'row' }, `${look.method}, ${look.minutesAfterRollout} min`),
        h('td', { class: 'commit' }, look.baselineCommit),
        numberCell(formatPct(look.changePct), look.changePct, { 'data-col': 'changePct' }),
        h('td', { class: 'num', 'data-col': 'ci' }, `${formatPct(look.ci[0])} to ${formatPct(look.ci[1])}`),
        h('td', { class: 'num' }, `${formatCount(look.n.baseline)} / ${formatCount(look.n.candidate)}`),
        numberCell(`${formatP(look.pValue)} ÷ ${share} = ${formatP(look.pForLook)}`, look.pForLook, {
          'data-col': 'pForLook',
        }),
        numberCell(`${+look.threshold.pct.toFixed(1)}% (${look.threshold.source})`, look.threshold.pct, {
          'data-col': 'threshold',
        }),
        h(
          'td',
          { 'data-col': 'verdict', 'data-value': look.meetsConditions ? 'meets' : 'misses' },
          missed.length === 0 ? 'meets both conditions' : missed.join(', '),
        ),
      ),
    );
  }
  const header = [
    'look',
    'against',
    'change',
    `${level} interval`,
    'samples base / head',
    'p ÷ share of alpha',
    'threshold',
    '',
  ];
  return h(
    'table',
    { class: 'data', id: 'rollout-looks' },
    h('caption', {}, `Each look of the rollout test; alpha ${looks[0]?.alpha ?? ''}`),
    h(
      'thead',
      {},
      h('tr', {}, ...header.map((c, i) => h('th', { scope: 'col', class: i >= 2 && i < 7 ? 'num' : undefined }, c))),
    ),
    body,
  );
}
