/**
 * Alerts of a service, open and resolved, grouped by the commit they appeared with (as Chromium's
 * perf dashboard groups by revision range): each with its evidence and root-cause functions, and
 * links to the views that show it.
 */
import { type AlertRecord, ApiError, apiGet } from '../api';
import type { ViewContext } from '../context';
import { h, hashHref, replaceChildren } from '../dom';
import { formatCost, formatCount, formatLevel, formatP, formatPct, formatTime } from '../format';
import { section, select } from './common';

export async function renderAlerts(main: HTMLElement, ctx: ViewContext): Promise<void> {
  const { service } = ctx;
  const status = ctx.params.get('status') ?? 'open';
  let alerts: AlertRecord[];
  try {
    alerts = await apiGet<AlertRecord[]>('/v1/alerts', { service, status: status === 'all' ? undefined : status });
  } catch (caught) {
    if (caught instanceof ApiError && caught.status === 501) {
      replaceChildren(
        main,
        h('h1', {}, 'Alerts'),
        h('p', { class: 'empty' }, 'This server runs without detectors (--detect-interval 0), so it keeps no alerts.'),
      );
      return;
    }
    throw caught;
  }
  if (!ctx.current()) return;
  const statusPick = select(
    'alert-status',
    'Which alerts',
    [
      { value: 'open', label: 'open' },
      { value: 'resolved', label: 'resolved' },
      { value: 'all', label: 'open and resolved' },
    ],
    status,
  );
  statusPick.addEventListener('change', () => ctx.go('alerts', { status: statusPick.value }));

  // Group by the candidate commit, newest group first (by the latest firstSeen in it).
  const groups = new Map<string, AlertRecord[]>();
  for (const a of alerts) {
    const list = groups.get(a.candidate.commit) ?? [];
    list.push(a);
    groups.set(a.candidate.commit, list);
  }
  const ordered = [...groups.entries()].sort(
    (x, y) => Math.max(...y[1].map((a) => a.firstSeen)) - Math.max(...x[1].map((a) => a.firstSeen)),
  );
  const sections = ordered.map(([commit, list]) =>
    h(
      'section',
      { class: 'panel alert-group', 'data-commit': commit, 'aria-label': `alerts of commit ${commit}` },
      h(
        'h2',
        {},
        'Commit ',
        h('span', { class: 'commit' }, commit),
        ` — ${list.length} alert${list.length === 1 ? '' : 's'}`,
      ),
      ...list.sort((a, b) => b.changePct - a.changePct).map((a) => alertCard(a, ctx)),
    ),
  );
  replaceChildren(
    main,
    h('h1', {}, `Alerts of ${service}`),
    h('div', { class: 'form-row' }, h('label', { for: 'alert-status' }, 'Show'), statusPick),
    sections.length === 0
      ? section(
          'No alerts',
          'alerts-none',
          h('p', { class: 'empty' }, `No ${status === 'all' ? '' : `${status} `}alerts for ${service}.`),
        )
      : null,
    ...sections,
  );
}

function alertCard(a: AlertRecord, ctx: ViewContext): HTMLElement {
  const service = a.service;
  const title =
    a.kind === 'flag' && a.flag
      ? `flag ${a.flag.key} = ${a.flag.variant} (vs ${a.flag.control})`
      : `${a.kind}: ${a.baseline.commit} → ${a.candidate.commit}`;
  const evidence = h(
    'dl',
    { class: 'evidence' },
    h('dt', {}, 'change'),
    h('dd', { 'data-field': 'changePct', 'data-value': String(a.changePct) }, formatPct(a.changePct)),
    h('dt', {}, a.confidence !== undefined ? `${formatLevel(a.confidence)} interval` : 'interval'),
    h(
      'dd',
      { 'data-field': 'ci', 'data-value': `${a.ci[0]},${a.ci[1]}` },
      `${formatPct(a.ci[0])} to ${formatPct(a.ci[1])}`,
    ),
    h('dt', {}, 'p-value'),
    h('dd', { 'data-field': 'pValue', 'data-value': String(a.pValue) }, formatP(a.pValue)),
    h('dt', {}, 'samples'),
    h('dd', { 'data-field': 'n' }, `${formatCount(a.n.baseline)} vs ${formatCount(a.n.candidate)}`),
    a.costMean ? h('dt', {}, 'mean cost / request') : null,
    a.costMean
      ? h('dd', {}, `${formatCost(a.costMean.baseline, a.metric)} → ${formatCost(a.costMean.candidate, a.metric)}`)
      : null,
    h('dt', {}, 'seen'),
    h(
      'dd',
      {},
      `${formatTime(a.firstSeen)}${a.status === 'resolved' ? `; resolved ${formatTime(a.resolvedAt)}${a.resolvedBy ? ` by ${a.resolvedBy}` : ''}` : ''}`,
    ),
  );
  const causes = h('ol', { class: 'root-cause' });
  for (const c of a.rootCause) {
    causes.append(
      h(
        'li',
        {},
        h('code', {}, c.function),
        ` ${c.file}:${c.line} `,
        h('span', { class: 'delta' }, formatPct(c.deltaPct)),
      ),
    );
  }
  const range = {
    range: ctx.params.get('range') ?? undefined,
    from: ctx.params.get('from') ?? undefined,
    to: ctx.params.get('to') ?? undefined,
  };
  const links = h(
    'p',
    { class: 'links' },
    h(
      'a',
      {
        href: hashHref('endpoint', {
          service,
          endpoint: a.endpoint,
          a: a.baseline.commit,
          b: a.candidate.commit,
          ...range,
        }),
      },
      'endpoint over time',
    ),
    ' · ',
    a.kind === 'flag' && a.flag
      ? h(
          'a',
          {
            href: hashHref('compare', {
              service,
              mode: 'flag',
              commit: a.candidate.commit,
              flag: a.flag.key,
              baseVariant: a.flag.control,
              headVariant: a.flag.variant,
              endpoint: a.endpoint,
            }),
          },
          'compare the variants',
        )
      : h(
          'a',
          {
            href: hashHref('compare', {
              service,
              mode: 'commits',
              base: a.baseline.commit,
              head: a.candidate.commit,
              endpoint: a.endpoint,
            }),
          },
          'compare the commits',
        ),
  );
  return h(
    'article',
    { class: `alert ${a.status}`, 'data-alert': a.id, 'data-status': a.status },
    h(
      'h3',
      {},
      h('span', { class: `badge ${a.status}` }, a.status),
      ' ',
      h('span', { class: 'endpoint' }, a.endpoint),
      ' ',
      h('span', { class: 'kind' }, title),
    ),
    evidence,
    a.summary ? h('p', { class: 'summary' }, a.summary) : null,
    a.rootCause.length > 0
      ? h('div', {}, h('h4', {}, 'Functions that explain it'), causes)
      : h('p', { class: 'muted' }, 'No profiles cover this change, so no functions are named.'),
    links,
  );
}
