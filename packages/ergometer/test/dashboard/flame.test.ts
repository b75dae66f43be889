import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import type { Browser } from 'playwright-core';
import {
  Label,
  Line,
  Location,
  Function as PprofFunction,
  Profile,
  Sample,
  StringTable,
  ValueType,
} from 'pprof-format';
import { HOUR } from '../detect/scenario';
import {
  agentLikeBatches,
  INGEST_TOKEN,
  launchChromium,
  postBatch,
  readApi,
  type Serve,
  screenshot,
  signIn,
  startServe,
  watchedPage,
} from './support';

/**
 * The Compare view's diff flame graph, end to end: request samples and pprof profiles (labelled
 * with the endpoint, as PROFILE-CONTRACT.md says the agent sends them) POSTed to a real
 * `ergometer serve`, `GET /v1/profiles/diff` computing the diff, the page drawing it in Chromium.
 */

const FEED = 'GET /feed/:id';
const EVIL_FUNCTION = '<img src=x onerror=alert(1)>';
const EVIL_FILE = '"><script>alert(1)</script>.js';

/** A gzipped pprof CPU profile: each stack root first, its cost in ns, labelled with the endpoint. */
function pprof(stacks: Array<{ frames: Array<[name: string, file: string]>; costNs: number }>): Buffer {
  const strings = new StringTable();
  const ids = new Map<string, number>();
  const functions: PprofFunction[] = [];
  const locations: Location[] = [];
  const idOf = ([name, file]: [string, string]): number => {
    const key = `${name}\u0000${file}`;
    let id = ids.get(key);
    if (id === undefined) {
      id = ids.size + 1;
      ids.set(key, id);
      functions.push(
        new PprofFunction({ id, name: strings.dedup(name), filename: strings.dedup(`/srv/app/${file}`), startLine: 1 }),
      );
      locations.push(new Location({ id, line: [new Line({ functionId: id, line: 1 })] }));
    }
    return id;
  };
  const samples = stacks.map(
    (stack) =>
      new Sample({
        // pprof lists a stack leaf first.
        locationId: stack.frames.map(idOf).reverse(),
        value: [1, stack.costNs],
        label: [new Label({ key: strings.dedup('endpoint'), str: strings.dedup(FEED) })],
      }),
  );
  const profile = new Profile({
    sampleType: [
      new ValueType({ type: strings.dedup('samples'), unit: strings.dedup('count') }),
      new ValueType({ type: strings.dedup('cpu'), unit: strings.dedup('nanoseconds') }),
    ],
    sample: samples,
    location: locations,
    function: functions,
    stringTable: strings,
  });
  return gzipSync(profile.encode());
}

async function postProfile(serve: Serve, commit: string, from: number, body: Buffer): Promise<void> {
  const query = new URLSearchParams({
    service: 'shop',
    commit,
    host: 'web-1',
    metric: 'cpu_ns',
    from: String(from),
    to: String(from + 60_000),
  });
  const response = await fetch(`${serve.url}/v1/profiles?${query}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${INGEST_TOKEN}`, 'content-type': 'application/octet-stream' },
    body,
  });
  const text = await response.text();
  assert.equal(response.status, 200, `${text}\n${serve.output()}`);
}

describe('diff flame graph in the Compare view', () => {
  let serve: Serve | undefined;
  let browser: Browser | undefined;

  before(async () => {
    serve = await startServe();
    const t0 = Math.floor(Date.now() / HOUR) * HOUR - 2 * HOUR;
    const endpoints = { [FEED]: 1_000_000 };
    // Profiles first, near the rollout, so the detectors' first look at the samples finds them.
    // v1 → v2: renderFeed grows, rankItems shrinks, a new function appears (its name and file hostile).
    const handler: [string, string] = ['handleFeed', 'src/app.js'];
    const render: [string, string] = ['renderFeed', 'src/feed.js'];
    const rank: [string, string] = ['rankItems', 'src/rank.js'];
    const evil: [string, string] = [EVIL_FUNCTION, EVIL_FILE];
    for (let i = 0; i < 3; i++) {
      await postProfile(
        serve,
        'v1',
        t0 + HOUR - (i + 1) * 300_000,
        pprof([
          { frames: [handler, render], costNs: 400_000_000 },
          { frames: [handler, rank], costNs: 600_000_000 },
        ]),
      );
      await postProfile(
        serve,
        'v2',
        t0 + HOUR + i * 300_000,
        pprof([
          { frames: [handler, render], costNs: 900_000_000 },
          { frames: [handler, rank], costNs: 300_000_000 },
          { frames: [handler, evil], costNs: 300_000_000 },
        ]),
      );
    }
    for (const batch of agentLikeBatches(
      'shop',
      [
        { commit: 'v1', from: t0, to: t0 + HOUR, endpoints, perHour: 600, shareB: 0 },
        { commit: 'v2', from: t0 + HOUR, to: t0 + 2 * HOUR, endpoints: { [FEED]: 1_500_000 }, perHour: 600, shareB: 0 },
      ],
      5,
    )) {
      await postBatch(serve.url, batch);
    }
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await serve?.stop();
    if (serve) rmSync(serve.dir, { recursive: true, force: true });
  });

  it('the diff from GET /v1/profiles/diff: grown red, shrunk blue; search, keyboard, zoom; names shown literally', async () => {
    const url = (serve as Serve).url;
    const diff = await readApi<{
      functions: Array<{ function: string; deltaPct: number }>;
    }>(url, '/v1/profiles/diff', { service: 'shop', base: 'v1', head: 'v2', endpoint: FEED });
    const { page, watch, close } = await watchedPage(browser as Browser);
    try {
      await signIn(
        page,
        url,
        `#/compare?service=shop&mode=commits&base=v1&head=v2&endpoint=${encodeURIComponent(FEED)}`,
      );
      assert.equal(await page.locator('#no-profiles').count(), 0, (await page.locator('main').textContent()) ?? '');
      const canvas = page.locator('#flame-canvas');
      await canvas.waitFor();

      // The functions table: the API's ranking, names as text.
      const names = await page.locator('#function-table tbody th code').allTextContents();
      assert.deepEqual(
        names,
        diff.functions.slice(0, 30).map((f) => f.function),
      );
      assert.ok(names.includes(EVIL_FUNCTION) && names.includes('renderFeed') && names.includes('rankItems'));
      const deltas = await page.locator('#function-table td[data-col=deltaPct]').evaluateAll(
        // biome-ignore lint/suspicious/noExplicitAny: the test project has no DOM types
        (tds: any[]) => tds.map((td) => Number(td.dataset.value)),
      );
      assert.deepEqual(
        deltas,
        diff.functions.slice(0, 30).map((f) => f.deltaPct),
      );
      assert.equal(await page.locator('main img, main script').count(), 0);

      // The colour of the frame that fills the row at CSS y (after zooming into it).
      const pixel = async (yCss: number) =>
        (await page.evaluate(`(() => {
          const c = document.getElementById('flame-canvas');
          const r = window.devicePixelRatio || 1;
          return Array.from(c.getContext('2d').getImageData(Math.round(c.width / 2), Math.round(${yCss} * r), 1, 1).data);
        })()`)) as number[];
      const details = async () => (await page.locator('#flame-details').textContent()) ?? '';
      // Keyboard: (root) → handleFeed → its children in code-unit order: the hostile one, rankItems, renderFeed.
      await canvas.focus();
      await page.keyboard.press('ArrowDown');
      assert.match(await details(), /^handleFeed /);
      await page.keyboard.press('ArrowDown');
      assert.ok((await details()).startsWith(`${EVIL_FUNCTION} ${EVIL_FILE}:1 — base 0 ns`), await details());
      assert.match(await details(), /\(new\)$/);
      await page.keyboard.press('ArrowRight');
      assert.match(await details(), /^rankItems src\/rank\.js:1 — base .* \(-\d/);
      await page.keyboard.press('Enter');
      const shrunk = await pixel(2 * 18 + 9);
      assert.ok((shrunk[2] ?? 0) > (shrunk[0] ?? 0) + 60, `rankItems shrank: blue, got ${shrunk}`);
      await page.keyboard.press('Escape');
      await page.keyboard.press('ArrowRight');
      assert.match(await details(), /^renderFeed src\/feed\.js:1 — base .* \(\+\d/);
      await page.keyboard.press('Enter');
      const grown = await pixel(2 * 18 + 9);
      assert.ok((grown[0] ?? 0) > (grown[2] ?? 0) + 60, `renderFeed grew: red, got ${grown}`);
      await page.locator('#flame-reset').click();

      // Search: the one matching frame.
      await page.locator('#flame-search').fill('renderfeed');
      assert.match((await page.locator('#flame-matches').textContent()) ?? '', /^1 frame match, /);
      await page.locator('#flame-search').fill('');
      await screenshot(page, 'compare-flame');
      assert.deepEqual(watch.dialogs, []);
      assert.deepEqual(watch.pageErrors, []);
      assert.deepEqual(watch.consoleErrors, []);
    } finally {
      await close();
    }
  });

  it('Alerts: the root-cause functions the detectors found in the profiles, as /v1/alerts gives them', async () => {
    const url = (serve as Serve).url;
    type Cause = { function: string; file: string; line: number; deltaPct: number };
    let alert: { id: string; rootCause: Cause[] } | undefined;
    const deadline = Date.now() + 60_000;
    while (!alert) {
      const alerts = await readApi<Array<{ id: string; endpoint: string; rootCause: Cause[] }>>(url, '/v1/alerts', {
        service: 'shop',
      });
      alert = alerts.find((a) => a.endpoint === FEED && a.rootCause.length > 0);
      if (!alert) {
        assert.ok(
          Date.now() < deadline,
          `no alert with a root cause after 60 s: ${JSON.stringify(alerts)}\n${(serve as Serve).output()}`,
        );
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
    const { page, watch, close } = await watchedPage(browser as Browser);
    try {
      await signIn(page, url, '#/alerts?service=shop&status=all');
      const causes = page.locator(`article[data-alert="${alert.id}"] ol.root-cause li`);
      assert.deepEqual(
        await causes.locator('code').allTextContents(),
        alert.rootCause.map((c) => c.function),
      );
      for (const [i, c] of alert.rootCause.entries()) {
        const text = (await causes.nth(i).textContent()) ?? '';
        assert.ok(text.includes(`${c.file}:${c.line}`), text);
        assert.ok(text.endsWith(`${c.deltaPct > 0 ? '+' : ''}${c.deltaPct.toFixed(2)}%`), text);
      }
      assert.equal(await page.locator('main img, main script').count(), 0);
      await screenshot(page, 'alerts-root-cause');
      assert.deepEqual(watch.dialogs, []);
      assert.deepEqual(watch.pageErrors, []);
      assert.deepEqual(watch.consoleErrors, []);
    } finally {
      await close();
    }
  });
});
