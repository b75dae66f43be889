import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { HOUR, type Phase } from '../detect/scenario';
import {
  agentLikeBatches,
  launchChromium,
  openView,
  type PageWatch,
  postBatch,
  READ_TOKEN,
  readApi,
  type Serve,
  screenshot,
  signIn,
  startServe,
  watchedPage,
} from './support';

/**
 * The dashboard end to end: wire batches POSTed to a real `ergometer serve` (DuckDB, detectors
 * every second), the page in Debian's Chromium, every number on screen compared with the read
 * API's own answer for the same question.
 */

const SHOP = 'shop';
const FEED = 'GET /feed/:id';
const SEARCH = 'GET /search';
const BASE = { [FEED]: 1_000_000, 'GET /profile/:id': 400_000, [SEARCH]: 2_000_000 };

/** Strings an attacker controls through the ingest API, in every field the dashboard shows. */
const EVIL = {
  service: 'xss"><img src=x onerror=alert(1)>',
  endpoints: [
    'GET /<img src=x onerror=alert(1)>',
    '"><script>alert(1)</script>',
    'javascript:alert(1)//',
    "GET /x' onmouseover='alert(1)' data-x='",
    '<img src=x onerror="window.__pwned=1">',
  ],
  flagKey: '<svg onload=alert(1)>',
  variants: ['"><img src=x onerror=alert(1)>', 'javascript:alert(1)'],
  commits: ['<img src=x onerror=alert(1)>', '"><script>window.__pwned=1</script>'],
};

interface EndpointRow {
  endpoint: string;
  metric: string;
  samples: number;
  requests: number;
  costMean: number;
  wallP50: number;
  wallP95: number;
  dbMs: number;
  cacheMs: number;
  httpMs: number;
  share: number;
}

interface TableRow {
  attrs: Record<string, string>;
  head: string;
  cells: Record<string, { value: string; text: string }>;
}

/** Rows of a rendered table: data-* of the row, the row header's text, and every td[data-col]'s value and text. */
async function tableRows(page: Page, selector: string): Promise<TableRow[]> {
  return (await page.evaluate(`Array.from(document.querySelectorAll(${JSON.stringify(`${selector} tbody tr`)})).map((tr) => ({
    attrs: Object.assign({}, tr.dataset),
    head: (tr.querySelector('th') || { textContent: '' }).textContent,
    cells: Object.fromEntries(Array.from(tr.querySelectorAll('td[data-col]')).map((td) => [td.dataset.col, { value: td.dataset.value, text: td.textContent }])),
  }))`)) as TableRow[];
}

// The expected text of a number, written independently of the page's code: CPU ns as ms or µs.
const cost = (v: number) => (v >= 1e6 ? `${(v / 1e6).toFixed(2)} ms` : `${(v / 1e3).toFixed(2)} µs`);
const ms = (v: number) => `${v < 10 ? v.toFixed(2) : v.toFixed(1)} ms`;
const pct = (v: number) => `${v > 0 ? '+' : ''}${v.toFixed(2)}%`;

/**
 * The same number up to floating-point rounding: the detectors recompute alerts every second and
 * DuckDB may add a sum's parts in another order, which moves the last bits (never the shown digits).
 */
function assertClose(shown: string | null | undefined, expected: number | undefined, what: string): void {
  const value = Number(shown);
  assert.ok(
    shown !== null &&
      shown !== undefined &&
      shown !== '' &&
      expected !== undefined &&
      Math.abs(value - expected) <= 1e-9 * Math.abs(expected),
    `${what}: page ${shown}, API ${expected}`,
  );
}

function hash(view: string, params: Record<string, string | number>): string {
  return `#/${view}?${new URLSearchParams(Object.entries(params).map(([k, v]): [string, string] => [k, String(v)]))}`;
}

function assertClean(watch: PageWatch, what: string): void {
  assert.deepEqual(watch.pageErrors, [], `${what}: uncaught errors`);
  assert.deepEqual(watch.consoleErrors, [], `${what}: console errors`);
  assert.deepEqual(watch.dialogs, [], `${what}: dialogs`);
}

describe('dashboard over a store filled through POST /v1/samples', () => {
  let serve: Serve | undefined;
  let browser: Browser | undefined;
  let url = '';
  let from = 0;
  let to = 0;
  let range: { from: number; to: number };

  before(async () => {
    serve = await startServe();
    url = serve.url;
    const now = Date.now();
    const t0 = Math.floor(now / HOUR) * HOUR - 10 * HOUR;
    const flag = { key: 'new_ranker', variant: 'on', control: 'off', share: 0.3 };
    const shop: Phase[] = [
      {
        commit: 'v1',
        from: t0,
        to: t0 + 5 * HOUR,
        endpoints: BASE,
        perHour: 800,
        shareB: 0.3,
        flag: { ...flag, factor: {} },
      },
      {
        commit: 'v2',
        from: t0 + 5 * HOUR,
        to: t0 + 10 * HOUR,
        endpoints: { ...BASE, [FEED]: BASE[FEED] * 1.12 },
        perHour: 800,
        shareB: 0.3,
        flag: { ...flag, factor: { [SEARCH]: 1.4 } },
      },
    ];
    const evilEndpoints = Object.fromEntries(EVIL.endpoints.map((e) => [e, 1_000_000]));
    const evil: Phase[] = [
      {
        commit: EVIL.commits[0] as string,
        from: t0,
        to: t0 + 5 * HOUR,
        endpoints: evilEndpoints,
        perHour: 200,
        shareB: 0,
        flag: {
          key: EVIL.flagKey,
          variant: EVIL.variants[0] as string,
          control: EVIL.variants[1] as string,
          share: 0.4,
          factor: {},
        },
      },
      {
        commit: EVIL.commits[1] as string,
        from: t0 + 5 * HOUR,
        to: t0 + 10 * HOUR,
        endpoints: { ...evilEndpoints, [EVIL.endpoints[0] as string]: 1_600_000 },
        perHour: 200,
        shareB: 0,
        flag: {
          key: EVIL.flagKey,
          variant: EVIL.variants[0] as string,
          control: EVIL.variants[1] as string,
          share: 0.4,
          factor: {},
        },
      },
    ];
    for (const batch of [...agentLikeBatches(SHOP, shop, 7), ...agentLikeBatches(EVIL.service, evil, 8)]) {
      await postBatch(url, batch);
    }
    from = t0;
    to = Math.ceil((now + 1) / 60_000) * 60_000 + 60_000;
    range = { from, to };
    // The detectors run every second: wait until both services have their alerts.
    const deadline = Date.now() + 90_000;
    for (;;) {
      const shopAlerts = await readApi<Array<{ endpoint: string }>>(url, '/v1/alerts', { service: SHOP });
      const evilAlerts = await readApi<unknown[]>(url, '/v1/alerts', { service: EVIL.service });
      if (shopAlerts.some((a) => a.endpoint === FEED) && evilAlerts.length > 0) break;
      if (Date.now() > deadline) throw new Error(`no alerts after 90 s:\n${serve.output()}`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await serve?.stop();
    if (serve) rmSync(serve.dir, { recursive: true, force: true });
  });

  it('Overview: every endpoint row, sparkline and the efficiency figure as the API answers them', async () => {
    const { page, watch, close } = await watchedPage(browser as Browser);
    try {
      await signIn(page, url, hash('overview', { service: SHOP, ...range }));
      const api = (
        await readApi<EndpointRow[]>(url, '/v1/endpoints', { service: SHOP, metric: 'cpu_ns', ...range })
      ).sort((a, b) => b.share - a.share);
      assert.equal(api.length, 3);
      const rows = await tableRows(page, '#endpoints');
      assert.deepEqual(
        rows.map((r) => r.attrs.endpoint),
        api.map((e) => e.endpoint),
      );
      for (const [i, e] of api.entries()) {
        const { cells } = rows[i] as TableRow;
        assert.equal(cells.costMean?.value, String(e.costMean));
        assert.equal(cells.costMean?.text, cost(e.costMean));
        assert.equal(cells.share?.value, String(e.share));
        assert.equal(cells.share?.text, `${(e.share * 100).toFixed(1)}%`);
        assert.equal(cells.requests?.value, String(e.requests));
        assert.equal(cells.requests?.text, Math.round(e.requests).toLocaleString('en-US'));
        for (const col of ['wallP50', 'wallP95', 'dbMs', 'cacheMs', 'httpMs'] as const) {
          assert.equal(cells[col]?.value, String(e[col]), `${e.endpoint} ${col}`);
          assert.equal(cells[col]?.text, ms(e[col]), `${e.endpoint} ${col}`);
        }
      }
      assert.ok(
        api.some((e) => e.dbMs > 0 && e.httpMs > 0),
        'backend times reached the store',
      );
      assert.equal(await page.locator('#endpoints td.spark canvas').count(), 3);
      const rollouts = await page.locator('#overview-rollouts li .commit').allTextContents();
      assert.deepEqual(rollouts, ['v1', 'v2']);
      const efficiency = await readApi<Array<{ costPerUser: number; metric: string }>>(url, '/v1/efficiency', {
        service: SHOP,
        from: Math.min(from, to - 14 * 86_400_000),
        to,
      });
      const last = efficiency[efficiency.length - 1];
      assert.ok(last, 'the efficiency figure needs users and counts');
      assert.equal(await page.locator('#efficiency-figure').getAttribute('data-value'), String(last.costPerUser));
      assert.equal(await page.locator('#efficiency-figure strong').textContent(), cost(last.costPerUser));
      await screenshot(page, 'overview');
      assertClean(watch, 'overview');
    } finally {
      await close();
    }
  });

  it('Endpoint: time series with rollouts, two commits overlaid, flag variants and host classes as the API answers them', async () => {
    const { page, watch, close } = await watchedPage(browser as Browser);
    try {
      await signIn(page, url, hash('endpoint', { service: SHOP, endpoint: SEARCH, ...range }));
      assert.equal(await page.locator('h1.endpoint-title').textContent(), SEARCH);
      // uPlot drew the series named mean, p50, p95.
      const legend = await page.locator('#endpoint-chart .u-legend .u-label').allTextContents();
      assert.deepEqual(legend.slice(1), ['mean', 'p50', 'p95']);
      const series = await readApi<{ points: Array<{ samples: number }> }>(url, '/v1/timeseries', {
        service: SHOP,
        endpoint: SEARCH,
        metric: 'cpu_ns',
        groupBy: 'none',
        ...range,
      });
      const total = series.points.reduce((t, p) => t + p.samples, 0);
      assert.equal(total, 8000);
      assert.match(
        (await page.locator('p.lede').textContent()) ?? '',
        new RegExp(`^${total.toLocaleString('en-US')} samples`),
      );

      // The two commits overlaid default to the last two: v1 and v2.
      const dist = await tableRows(page, '#distribution-summary');
      assert.deepEqual(
        dist.map((r) => r.attrs.commit),
        ['v1', 'v2'],
      );
      for (const [i, commit] of ['v1', 'v2'].entries()) {
        const d = await readApi<{ samples: number; costMean: number; bins: unknown[] }>(url, '/v1/distribution', {
          service: SHOP,
          endpoint: SEARCH,
          commit,
          metric: 'cpu_ns',
          ...range,
        });
        assert.ok(d.bins.length > 5);
        const values = await page
          .locator('#distribution-summary tbody tr')
          .nth(i)
          .locator('td')
          .evaluateAll(
            // biome-ignore lint/suspicious/noExplicitAny: the test project has no DOM types
            (tds: any[]) => tds.map((td) => td.dataset.value as string),
          );
        assert.deepEqual(values, [String(d.samples), String(d.costMean)]);
      }
      assert.equal((await page.locator('#distribution-chart canvas').count()) > 0, true);

      const breakdown = await readApi<{
        flags: Array<{ key: string; variant: string; samples: number; costMean: number }>;
        hostClasses: Array<{ hostClass: string; samples: number; costMean: number }>;
      }>(url, '/v1/breakdown', { service: SHOP, endpoint: SEARCH, commit: 'v2', metric: 'cpu_ns', ...range });
      const flagRows = await tableRows(page, '#breakdown-flags');
      assert.equal(flagRows.length, 2);
      assert.deepEqual(
        flagRows.map((r) => [r.head, r.cells.samples?.value, r.cells.costMean?.value]),
        breakdown.flags.map((f) => [f.key, String(f.samples), String(f.costMean)]),
      );
      // The flag made "on" dearer on v2: the page shows it as the API does.
      const on = breakdown.flags.find((f) => f.variant === 'on');
      const off = breakdown.flags.find((f) => f.variant === 'off');
      assert.ok(on && off && on.costMean > off.costMean * 1.2);
      const hostRows = await tableRows(page, '#breakdown-hosts');
      assert.deepEqual(
        hostRows.map((r) => [r.head, r.cells.samples?.value, r.cells.costMean?.text]),
        breakdown.hostClasses.map((c) => [c.hostClass, String(c.samples), cost(c.costMean)]),
      );
      // The rollout test of v2 at this endpoint, look by look, as /v1/explain answers it.
      const explained = await readApi<{
        commit: string;
        looks: Array<{ minutesAfterRollout: number; changePct: number; pForLook: number; meetsConditions: boolean }>;
      }>(url, '/v1/explain', { service: SHOP, endpoint: SEARCH, commit: 'v2' });
      assert.ok(explained.looks.length >= 1, JSON.stringify(explained));
      await page.locator('#endpoint-rollout-test[data-ready="true"]').waitFor();
      assert.equal(await page.locator('#endpoint-rollout-test-title').textContent(), 'Rollout test of v2');
      const looks = await tableRows(page, '#rollout-looks');
      assert.deepEqual(
        looks.map((r) => [Number(r.attrs.minutes), r.cells.verdict?.value]),
        explained.looks.map((l) => [l.minutesAfterRollout, l.meetsConditions ? 'meets' : 'misses']),
      );
      for (const [i, look] of explained.looks.entries()) {
        assertClose(looks[i]?.cells.changePct?.value, look.changePct, `look ${i} change`);
        assertClose(looks[i]?.cells.pForLook?.value, look.pForLook, `look ${i} p`);
      }
      await screenshot(page, 'endpoint');
      assertClean(watch, 'endpoint');
    } finally {
      await close();
    }
  });

  it('Alerts: open and resolved grouped by commit, evidence as the API answers it, links to the proving views', async () => {
    const { page, watch, close } = await watchedPage(browser as Browser);
    try {
      await signIn(page, url, hash('alerts', { service: SHOP, status: 'all', ...range }));
      const alerts = await readApi<
        Array<{
          id: string;
          endpoint: string;
          kind: string;
          changePct: number;
          ci: [number, number];
          confidence: number;
          pValue: number;
          candidate: { commit: string };
        }>
      >(url, '/v1/alerts', { service: SHOP });
      assert.ok(alerts.length >= 1);
      assert.equal(await page.locator('article.alert').count(), alerts.length);
      for (const a of alerts) {
        const card = page.locator(
          `section.alert-group[data-commit="${a.candidate.commit}"] article[data-alert="${a.id}"]`,
        );
        assert.equal(await card.count(), 1, `alert ${a.id} in the group of ${a.candidate.commit}`);
        assertClose(await card.locator('[data-field=changePct]').getAttribute('data-value'), a.changePct, 'change');
        assert.equal(await card.locator('[data-field=changePct]').textContent(), pct(a.changePct));
        const ci = ((await card.locator('[data-field=ci]').getAttribute('data-value')) ?? '').split(',');
        assertClose(ci[0], a.ci[0], 'ci low');
        assertClose(ci[1], a.ci[1], 'ci high');
        // The interval says its level, as the alert carries it.
        assert.equal(
          await card.locator('dt', { hasText: 'interval' }).textContent(),
          `${a.confidence * 100}% interval`,
        );
        assertClose(await card.locator('[data-field=pValue]').getAttribute('data-value'), a.pValue, 'p');
        assert.equal(await card.locator('span.endpoint').textContent(), a.endpoint);
      }
      await screenshot(page, 'alerts');
      // The feed regression links to the comparison of its two commits, which shows the same change.
      const feed = alerts.find((a) => a.endpoint === FEED && a.kind === 'rollout');
      assert.ok(feed, 'the feed regression is an alert');
      await page.locator(`article[data-alert="${feed.id}"] a`, { hasText: 'compare the commits' }).click();
      await page.locator('#view[data-view="compare"][data-ready="true"]').waitFor();
      const change = page.locator(`#compare-table tr[data-endpoint="${FEED}"] td[data-col=changePct]`);
      const compare = await readApi<Array<{ endpoint: string; changePct: number }>>(url, '/v1/compare', {
        service: SHOP,
        base: 'v1',
        head: 'v2',
      });
      assertClose(await change.getAttribute('data-value'), compare.find((c) => c.endpoint === FEED)?.changePct, 'feed');
      await page.goBack();
      await page.locator('#view[data-view="alerts"][data-ready="true"]').waitFor();
      assertClean(watch, 'alerts');
    } finally {
      await close();
    }
  });

  it('Compare: two commits and two flag variants as /v1/compare answers them; "no profiles" without profiles', async () => {
    const { page, watch, close } = await watchedPage(browser as Browser);
    try {
      await signIn(page, url, hash('compare', { service: SHOP, mode: 'commits', base: 'v1', head: 'v2' }));
      const byCommit = await readApi<
        Array<{
          endpoint: string;
          changePct: number;
          ci: [number, number];
          confidence: number;
          pValue: number;
          costMean: { baseline: number; candidate: number };
        }>
      >(url, '/v1/compare', { service: SHOP, base: 'v1', head: 'v2' });
      const check = async (api: typeof byCommit) => {
        const rows = await tableRows(page, '#compare-table');
        assert.equal(rows.length, api.length);
        for (const c of api) {
          const row = rows.find((r) => r.attrs.endpoint === c.endpoint);
          assert.ok(row, c.endpoint);
          assertClose(row.cells.changePct?.value, c.changePct, `${c.endpoint} change`);
          assert.equal(row.cells.changePct?.text, pct(c.changePct));
          const ci = (row.cells.ci?.value ?? '').split(',');
          assertClose(ci[0], c.ci[0], `${c.endpoint} ci low`);
          assertClose(ci[1], c.ci[1], `${c.endpoint} ci high`);
          assert.equal(row.cells.ci?.text, `${pct(c.ci[0])} to ${pct(c.ci[1])}`);
          assertClose(row.cells.pValue?.value, c.pValue, `${c.endpoint} p`);
          assertClose(row.cells.base?.value, c.costMean.baseline, `${c.endpoint} base`);
          assertClose(row.cells.head?.value, c.costMean.candidate, `${c.endpoint} head`);
        }
      };
      await check(byCommit);
      assert.match(
        (await page.locator('#compare-table caption').textContent()) ?? '',
        new RegExp(`, ${(byCommit[0]?.confidence ?? Number.NaN) * 100}% intervals;`),
      );
      // The note on widened intervals is there exactly when the API widened them (this shop's data: one
      // process per host class, nothing to learn a spread from, so no note).
      const widened = byCommit.some(
        (c) => (c as { processes?: { spreadPct?: number } }).processes?.spreadPct !== undefined,
      );
      assert.equal(await page.locator('#process-spread').count(), widened ? 1 : 0);
      const feed = byCommit.find((c) => c.endpoint === FEED);
      assert.ok(feed && feed.ci[0] > 5 && feed.ci[1] < 20, `feed +12%: ${JSON.stringify(feed)}`);
      assert.match((await page.locator('#no-profiles').textContent()) ?? '', /No profiles for this comparison/);
      await screenshot(page, 'compare-commits');

      // Switching the mode with the keyboard: the select, then the flag's variants.
      await page.locator('#compare-mode').selectOption('flag');
      await page.locator('#view[data-view="compare"][data-ready="true"] #compare-flag').waitFor();
      await openView(
        page,
        hash('compare', {
          service: SHOP,
          mode: 'flag',
          commit: 'v2',
          flag: 'new_ranker',
          baseVariant: 'off',
          headVariant: 'on',
        }),
        'compare',
      );
      const byFlag = await readApi<typeof byCommit>(url, '/v1/compare', {
        service: SHOP,
        commit: 'v2',
        flag: 'new_ranker',
        baseVariant: 'off',
        headVariant: 'on',
      });
      await check(byFlag);
      const search = byFlag.find((c) => c.endpoint === SEARCH);
      assert.ok(search && search.ci[0] > 25, `search +40% with the flag on: ${JSON.stringify(search)}`);
      await screenshot(page, 'compare-flag');
      assertClean(watch, 'compare');
    } finally {
      await close();
    }
  });

  it('navigation by keyboard and links; the state is in the URL and survives a reload', async () => {
    const { page, watch, close } = await watchedPage(browser as Browser);
    try {
      await signIn(page, url, hash('overview', { service: SHOP, ...range }));
      // Tab from the top reaches the brand, then the views.
      await page.keyboard.press('Tab');
      assert.equal(await page.evaluate('document.activeElement.className'), 'brand');
      await page.keyboard.press('Tab');
      assert.equal(await page.evaluate('document.activeElement.textContent'), 'Overview');
      // An endpoint link, opened with Enter.
      await page.locator('a.endpoint-link', { hasText: FEED }).focus();
      await page.keyboard.press('Enter');
      await page.locator('#view[data-view="endpoint"][data-ready="true"]').waitFor();
      assert.equal(await page.locator('h1.endpoint-title').textContent(), FEED);
      const shared = page.url();
      assert.ok(!shared.includes(READ_TOKEN));
      // The same URL in a new tab of the same session shows the same view.
      await page.reload();
      await page.locator('#view[data-view="endpoint"][data-ready="true"]').waitFor();
      assert.equal(await page.locator('h1.endpoint-title').textContent(), FEED);
      await page.locator('nav a', { hasText: 'Alerts' }).click();
      await page.locator('#view[data-view="alerts"][data-ready="true"]').waitFor();
      await page.goBack();
      await page.locator('#view[data-view="endpoint"][data-ready="true"]').waitFor();
      assert.equal(page.url(), shared);
      // The service select moves to that service's overview.
      await page.locator('#service').selectOption(EVIL.service);
      await page.locator('#view[data-view="overview"][data-ready="true"]').waitFor();
      assert.equal(await page.locator('main h1').textContent(), EVIL.service);
      assertClean(watch, 'navigation');
    } finally {
      await close();
    }
  });

  it('resizing: a new width redraws the charts to fit it; a new height alone keeps the view as drawn', async () => {
    const { page, watch, close } = await watchedPage(browser as Browser);
    try {
      await signIn(page, url, hash('endpoint', { service: SHOP, endpoint: SEARCH, ...range }));
      const drawnWidth = async () =>
        (await page.evaluate(
          `document.querySelector('#endpoint-chart .uplot').getBoundingClientRect().width`,
        )) as number;
      const wide = await drawnWidth();
      // A mark on the drawn view: a new render replaces the element and loses it.
      await page.evaluate(`document.getElementById('view').dataset.probe = 'drawn before'`);
      const requests: string[] = [];
      page.on('request', (request) => requests.push(request.url()));
      // Height alone (a phone's address bar, a full-page screenshot): nothing is loaded or drawn again.
      await page.setViewportSize({ width: 1280, height: 500 });
      await page.screenshot({ fullPage: true });
      // The redraw waits for the resize to settle (250 ms); give it more than twice that.
      await page.waitForTimeout(600);
      assert.equal(await page.evaluate(`document.getElementById('view').dataset.probe`), 'drawn before');
      assert.deepEqual(requests, [], 'no API call after a change of height');
      // A new width: the view is drawn again and its chart fits the narrower window.
      await page.setViewportSize({ width: 900, height: 500 });
      await page.locator('#view[data-view="endpoint"][data-ready="true"]:not([data-probe])').waitFor();
      const narrow = await drawnWidth();
      assert.ok(narrow < wide - 300, `chart ${wide}px wide at 1280px, ${narrow}px at 900px`);
      assert.ok(narrow <= 900, `the chart (${narrow}px) fits the 900px window`);
      assertClean(watch, 'resize');
    } finally {
      await close();
    }
  });

  it('sortable columns: click, Enter or Space on a header sorts the rows, aria-sort says how, the sort is in the URL', async () => {
    const { page, watch, close } = await watchedPage(browser as Browser);
    /** The numbers of one column in the order the page shows them. */
    const column = async (table: string, col: string): Promise<number[]> =>
      (await tableRows(page, table)).map((r) => Number(r.cells[col]?.value));
    const ariaSort = async (table: string): Promise<Array<[string, string | null]>> =>
      (await page.evaluate(
        `Array.from(document.querySelectorAll(${JSON.stringify(`${table} thead th[aria-sort]`)})).map((th) => [th.querySelector('button').dataset.sort, th.getAttribute('aria-sort')])`,
      )) as Array<[string, string | null]>;
    const sortParam = () => new URLSearchParams(new URL(page.url()).hash.split('?')[1] ?? '').get('sort');
    try {
      await signIn(page, url, hash('overview', { service: SHOP, ...range }));
      const api = await readApi<EndpointRow[]>(url, '/v1/endpoints', { service: SHOP, metric: 'cpu_ns', ...range });
      const desc = (values: number[]) => [...values].sort((a, b) => b - a);
      const asc = (values: number[]) => [...values].sort((a, b) => a - b);
      // Unsorted by the user: by share, largest first, and the share header says so.
      assert.deepEqual(await column('#endpoints', 'share'), desc(api.map((e) => e.share)));
      assert.deepEqual(await ariaSort('#endpoints'), [['share', 'descending']]);

      // A click on "cost / request": largest first; a second click: smallest first.
      const costMeans = api.map((e) => e.costMean);
      assert.equal(new Set(costMeans).size, costMeans.length, 'distinct costs: the order is observable');
      await page.locator('#endpoints thead button[data-sort="costMean"]').click();
      assert.deepEqual(await column('#endpoints', 'costMean'), desc(costMeans));
      assert.deepEqual(await ariaSort('#endpoints'), [['costMean', 'descending']]);
      assert.equal(sortParam(), '-costMean');
      await page.locator('#endpoints thead button[data-sort="costMean"]').click();
      assert.deepEqual(await column('#endpoints', 'costMean'), asc(costMeans));
      assert.deepEqual(await ariaSort('#endpoints'), [['costMean', 'ascending']]);
      assert.equal(sortParam(), 'costMean');

      // By keyboard: Enter on "wall p95", then Space on the same header (which keeps the focus).
      const wallP95 = api.map((e) => e.wallP95);
      await page.locator('#endpoints thead button[data-sort="wallP95"]').focus();
      await page.keyboard.press('Enter');
      assert.deepEqual(await column('#endpoints', 'wallP95'), desc(wallP95));
      assert.equal(await page.evaluate('document.activeElement.dataset.sort'), 'wallP95');
      await page.keyboard.press('Space');
      assert.deepEqual(await column('#endpoints', 'wallP95'), asc(wallP95));
      assert.deepEqual(await ariaSort('#endpoints'), [['wallP95', 'ascending']]);
      // The endpoint names sort as text.
      await page.locator('#endpoints thead button[data-sort="endpoint"]').click();
      assert.deepEqual(
        (await tableRows(page, '#endpoints')).map((r) => r.attrs.endpoint),
        api.map((e) => e.endpoint).sort((a, b) => a.localeCompare(b)),
      );

      // The sort is part of the link: a reload shows the same order.
      await page.locator('#endpoints thead button[data-sort="requests"]').click();
      const sorted = await column('#endpoints', 'requests');
      assert.deepEqual(sorted, desc(api.map((e) => e.requests)));
      await page.reload();
      await page.locator('#view[data-view="overview"][data-ready="true"]').waitFor();
      assert.deepEqual(await column('#endpoints', 'requests'), sorted);
      assert.deepEqual(await ariaSort('#endpoints'), [['requests', 'descending']]);

      // Compare: by p (smallest first), then by change with the keyboard.
      await openView(page, hash('compare', { service: SHOP, mode: 'commits', base: 'v1', head: 'v2' }), 'compare');
      const compare = await readApi<Array<{ changePct: number; pValue: number }>>(url, '/v1/compare', {
        service: SHOP,
        base: 'v1',
        head: 'v2',
      });
      assert.deepEqual(await column('#compare-table', 'changePct'), desc(compare.map((c) => c.changePct)));
      assert.deepEqual(await ariaSort('#compare-table'), [['changePct', 'descending']]);
      await page.locator('#compare-table thead button[data-sort="pValue"]').click();
      assert.deepEqual(await column('#compare-table', 'pValue'), asc(compare.map((c) => c.pValue)));
      assert.deepEqual(await ariaSort('#compare-table'), [['pValue', 'ascending']]);
      assert.equal(sortParam(), 'pValue');
      await page.locator('#compare-table thead button[data-sort="changePct"]').focus();
      await page.keyboard.press('Enter');
      assert.deepEqual(await column('#compare-table', 'changePct'), desc(compare.map((c) => c.changePct)));
      await page.keyboard.press('Enter');
      assert.deepEqual(await column('#compare-table', 'changePct'), asc(compare.map((c) => c.changePct)));
      assert.equal(sortParam(), 'changePct');
      await screenshot(page, 'compare-sorted');
      assertClean(watch, 'sorting');
    } finally {
      await close();
    }
  });

  it('untrusted strings in endpoints, flags, variants, commits and service show literally and run nothing', async () => {
    const { page, watch, close } = await watchedPage(browser as Browser);
    try {
      await signIn(page, url, hash('overview', { service: EVIL.service, ...range }));
      const proveInert = async (what: string, expected: string[]) => {
        const state = (await page.evaluate(`({
          pwned: window.__pwned === undefined ? null : window.__pwned,
          scripts: Array.from(document.scripts).map((s) => s.getAttribute('src')),
          injected: document.querySelectorAll('main img, main svg, main iframe, main object, main embed, main script').length,
          badLinks: Array.from(document.querySelectorAll('a')).map((a) => a.getAttribute('href') || '').filter((h) => !h.startsWith('#')),
          handlers: Array.from(document.querySelectorAll('*')).filter((el) => Array.from(el.attributes).some((a) => a.name.startsWith('on'))).length,
          text: document.body.textContent,
        })`)) as {
          pwned: unknown;
          scripts: string[];
          injected: number;
          badLinks: string[];
          handlers: number;
          text: string;
        };
        assert.equal(state.pwned, null, `${what}: a payload ran`);
        assert.deepEqual(state.scripts, ['/assets/app.js'], `${what}: scripts`);
        assert.equal(state.injected, 0, `${what}: markup from the network became elements`);
        assert.deepEqual(state.badLinks, [], `${what}: links`);
        assert.equal(state.handlers, 0, `${what}: event handler attributes`);
        for (const s of expected) assert.ok(state.text.includes(s), `${what}: ${JSON.stringify(s)} shown literally`);
        assert.deepEqual(watch.dialogs, [], `${what}: dialogs`);
      };
      await proveInert('overview', [EVIL.service, ...EVIL.endpoints, ...EVIL.commits]);
      await screenshot(page, 'xss-overview');
      for (const endpoint of EVIL.endpoints) {
        await openView(page, hash('endpoint', { service: EVIL.service, endpoint, ...range }), 'endpoint');
        assert.equal(await page.locator('h1.endpoint-title').textContent(), endpoint);
        await proveInert(`endpoint ${endpoint}`, [endpoint, EVIL.flagKey, ...EVIL.variants, ...EVIL.commits]);
      }
      await openView(page, hash('alerts', { service: EVIL.service, status: 'all', ...range }), 'alerts');
      assert.ok((await page.locator('article.alert').count()) > 0);
      await proveInert('alerts', [EVIL.endpoints[0] as string, EVIL.commits[1] as string]);
      // The alert's links carry the strings as URL-encoded parameters of the hash, and work.
      await page.locator('article.alert a', { hasText: 'compare the commits' }).first().click();
      await page.locator('#view[data-view="compare"][data-ready="true"]').waitFor();
      assert.equal(await page.locator('#compare-base').inputValue(), EVIL.commits[0]);
      assert.equal(await page.locator('#compare-head').inputValue(), EVIL.commits[1]);
      await proveInert('compare commits', [...EVIL.endpoints, ...EVIL.commits]);
      await openView(
        page,
        hash('compare', { service: EVIL.service, mode: 'flag', commit: EVIL.commits[1] as string, ...range }),
        'compare',
      );
      assert.equal(await page.locator('#compare-flag').inputValue(), EVIL.flagKey);
      await proveInert('compare flag', [EVIL.flagKey, ...EVIL.variants, ...EVIL.endpoints]);
      await screenshot(page, 'xss-compare-flag');
      assertClean(watch, 'untrusted strings');
    } finally {
      await close();
    }
  });

  it('without a valid read token: the page shows only the login, every API call is 401, the token stays out of URLs', async () => {
    // The API: no token and a wrong token are refused on every read route.
    const routes = [
      '/v1/services',
      `/v1/endpoints?service=${SHOP}`,
      `/v1/timeseries?service=${SHOP}`,
      `/v1/commits?service=${SHOP}`,
      `/v1/deploys?service=${SHOP}`,
      `/v1/compare?service=${SHOP}&base=v1&head=v2`,
      `/v1/alerts?service=${SHOP}`,
      `/v1/efficiency?service=${SHOP}`,
      `/v1/profiles?service=${SHOP}`,
      `/v1/profiles/diff?service=${SHOP}&base=v1&head=v2`,
      `/v1/breakdown?service=${SHOP}`,
      `/v1/distribution?service=${SHOP}&endpoint=x`,
    ];
    for (const route of routes) {
      const attempts: Array<Record<string, string>> = [
        {},
        { authorization: 'Bearer wrong-token' },
        { authorization: READ_TOKEN },
      ];
      for (const headers of attempts) {
        const response = await fetch(`${url}${route}`, { headers });
        assert.equal(response.status, 401, `${route} with ${JSON.stringify(headers)}`);
        await response.arrayBuffer();
      }
    }
    // The page shell carries no data, and a strict CSP on it and its assets.
    for (const asset of ['/', '/assets/app.js', '/assets/app.css']) {
      const response = await fetch(`${url}${asset}`);
      assert.equal(response.status, 200, asset);
      const csp = response.headers.get('content-security-policy') ?? '';
      assert.match(csp, /default-src 'none'/);
      assert.match(csp, /script-src 'self'(;|$)/);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
      assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
      const body = await response.text();
      if (asset === '/') assert.doesNotMatch(body, /<script>|\bon[a-z]+=/i, 'no inline script in the shell');
    }

    const { page, watch, close } = await watchedPage(browser as Browser);
    const requested: string[] = [];
    page.on('request', (request) => requested.push(request.url()));
    try {
      await page.goto(`${url}/${hash('overview', { service: SHOP })}`);
      await page.locator('#login').waitFor();
      assert.equal(await page.locator('#view').count(), 0);
      assert.equal(await page.evaluate('document.activeElement.id'), 'token');
      await screenshot(page, 'login');
      // A wrong token: refused, nothing kept, still the login.
      await page.locator('#token').fill('not-the-token');
      await page.keyboard.press('Enter');
      await page.locator('#login-error', { hasText: 'not a read token' }).waitFor();
      assert.equal(await page.evaluate('sessionStorage.length'), 0);
      assert.equal(await page.locator('#view').count(), 0);
      // The right one: kept in sessionStorage only, sent as a header, never in a URL.
      await page.locator('#token').fill(READ_TOKEN);
      await page.keyboard.press('Enter');
      await page.locator('#view[data-ready="true"]').waitFor();
      assert.equal(await page.evaluate(`sessionStorage.getItem('ergometer.readToken')`), READ_TOKEN);
      assert.equal(await page.evaluate('document.cookie'), '');
      assert.equal(await page.evaluate('localStorage.length'), 0);
      assert.ok(requested.length > 3);
      for (const r of requested) assert.ok(!r.includes(READ_TOKEN), `token in ${r}`);
      // A token the server no longer accepts (rotated): back to the login, token dropped.
      await page.evaluate(`sessionStorage.setItem('ergometer.readToken', 'rotated-away')`);
      await page.reload();
      await page.locator('#login-error', { hasText: 'refused the token' }).waitFor();
      assert.equal(await page.evaluate('sessionStorage.length'), 0);
      assert.deepEqual(watch.pageErrors, []);
      assert.deepEqual(watch.dialogs, []);
      // The only console errors are the refused requests themselves.
      for (const message of watch.consoleErrors) assert.match(message, /401/);
    } finally {
      await close();
    }
  });
});
