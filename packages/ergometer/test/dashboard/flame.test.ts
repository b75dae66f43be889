import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Browser, Route } from 'playwright-core';
import { HOUR } from '../detect/scenario';
import {
  agentLikeBatches,
  launchChromium,
  postBatch,
  type Serve,
  screenshot,
  signIn,
  startServe,
  watchedPage,
} from './support';

/**
 * The Compare view's diff flame graph, in Chromium. Until the profiler's server side
 * (`GET /v1/profiles/diff`, branch profiler-server) is merged, this build answers that route 501;
 * so here the browser is handed the answer PROFILE-CONTRACT.md specifies for the two profile
 * routes, and everything else comes from a real `ergometer serve`. It checks what the page does
 * with such an answer: colours, search, keyboard, and function names shown literally. Once the
 * server side lands, dashboard.test.ts gains the same checks over profiles POSTed for real.
 */

const EVIL_FUNCTION = '<img src=x onerror=alert(1)>';

/** An answer of the shape PROFILE-CONTRACT.md gives: one function grew, one shrank, one is new. */
function contractDiff(service: string) {
  const leaf = (name: string, base: number, head: number) => ({
    name,
    file: 'src/app.js',
    line: 1,
    base,
    head,
    children: [],
  });
  return {
    service,
    endpoint: 'GET /feed/:id',
    metric: 'cpu_ns',
    base: { commit: 'v1', variant: null, profiles: 3, samples: 1200, costPerRequest: 1000 },
    head: { commit: 'v2', variant: null, profiles: 3, samples: 1300, costPerRequest: 1500 },
    functions: [
      {
        function: 'renderFeed',
        file: 'src/feed.js',
        line: 42,
        base: { self: 400, total: 400 },
        head: { self: 900, total: 900 },
        deltaSelf: 500,
        deltaTotal: 500,
        deltaPct: 50,
      },
      {
        function: 'rankItems',
        file: 'src/rank.js',
        line: 7,
        base: { self: 600, total: 600 },
        head: { self: 300, total: 300 },
        deltaSelf: -300,
        deltaTotal: -300,
        deltaPct: -30,
      },
      {
        function: EVIL_FUNCTION,
        file: '"><script>alert(1)</script>.js',
        line: 3,
        base: { self: 0, total: 0 },
        head: { self: 300, total: 300 },
        deltaSelf: 300,
        deltaTotal: 300,
        deltaPct: 30,
      },
    ],
    flame: {
      name: '(root)',
      file: '',
      line: 0,
      base: 1000,
      head: 1500,
      children: [
        // Laid out in code-unit order of names: the evil one (width 300), a_renderFeed (900), b_rankItems (600).
        { ...leaf('a_renderFeed', 400, 900) },
        { ...leaf('b_rankItems', 600, 300) },
        { ...leaf(EVIL_FUNCTION, 0, 300), file: '"><script>alert(1)</script>.js', line: 3 },
      ],
    },
  };
}

describe('diff flame graph in the Compare view', () => {
  let serve: Serve | undefined;
  let browser: Browser | undefined;

  before(async () => {
    serve = await startServe();
    const t0 = Math.floor(Date.now() / HOUR) * HOUR - 2 * HOUR;
    const endpoints = { 'GET /feed/:id': 1_000_000 };
    for (const batch of agentLikeBatches(
      'shop',
      [
        { commit: 'v1', from: t0, to: t0 + HOUR, endpoints, perHour: 200, shareB: 0 },
        { commit: 'v2', from: t0 + HOUR, to: t0 + 2 * HOUR, endpoints, perHour: 200, shareB: 0 },
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

  it('grown red, shrunk blue; search, keyboard and zoom; function names shown literally', async () => {
    const { page, watch, close } = await watchedPage(browser as Browser);
    try {
      const json = (route: Route, body: unknown) =>
        route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(body) });
      await page.route(/\/v1\/profiles\?/, (route) =>
        json(route, [
          {
            id: 'p1',
            service: 'shop',
            commit: 'v1',
            host: 'web-1',
            metric: 'cpu_ns',
            from: 0,
            to: 1,
            receivedAt: 1,
            bytes: 10,
          },
        ]),
      );
      await page.route(/\/v1\/profiles\/diff\?/, (route) => json(route, contractDiff('shop')));
      await signIn(
        page,
        (serve as Serve).url,
        '#/compare?service=shop&mode=commits&base=v1&head=v2&endpoint=GET%20%2Ffeed%2F%3Aid',
      );
      assert.equal(await page.locator('#no-profiles').count(), 0);
      const canvas = page.locator('#flame-canvas');
      await canvas.waitFor();
      const box = await canvas.boundingBox();
      assert.ok(box && box.width > 400);
      // Colour at the middle of each depth-1 frame: x in CSS px from the frame's share of 1800 (900 + 600 + 300).
      const pixel = async (share: number) =>
        (await page.evaluate(`(() => {
          const c = document.getElementById('flame-canvas');
          const r = window.devicePixelRatio || 1;
          return Array.from(c.getContext('2d').getImageData(Math.round(${share} * c.width), Math.round(27 * r), 1, 1).data);
        })()`)) as number[];
      const grown = await pixel(750 / 1800);
      const shrunk = await pixel(1500 / 1800);
      assert.ok((grown[0] ?? 0) > (grown[2] ?? 0) + 80, `grown frame is red: ${grown}`);
      assert.ok((shrunk[2] ?? 0) > (shrunk[0] ?? 0) + 80, `shrunk frame is blue: ${shrunk}`);

      // The functions table: names as text, ranked as the API ranked them.
      const names = await page.locator('#function-table tbody th code').allTextContents();
      assert.deepEqual(names, ['renderFeed', 'rankItems', EVIL_FUNCTION]);
      assert.equal(await page.locator('main img, main script').count(), 0);

      // Search: the matching frames and their share of the head cost.
      await page.locator('#flame-search').fill('rank');
      assert.match(
        (await page.locator('#flame-matches').textContent()) ?? '',
        /^1 frame match, 300 ns of 1.50 µs per request in head$/,
      );

      // Keyboard: down to the first child, right to its sibling, Enter zooms, Escape zooms out.
      await canvas.focus();
      await page.keyboard.press('ArrowDown');
      assert.match(
        (await page.locator('#flame-details').textContent()) ?? '',
        /^<img src=x onerror=alert\(1\)> "><script>alert\(1\)<\/script>\.js:3 — base 0 ns, head 300 ns per request \(new\)$/,
      );
      await page.keyboard.press('ArrowRight');
      await page.keyboard.press('ArrowRight');
      await page.keyboard.press('ArrowLeft');
      assert.match(
        (await page.locator('#flame-details').textContent()) ?? '',
        /^a_renderFeed src\/app\.js:1 — base 400 ns, head 900 ns per request \(\+125\.00%\)$/,
      );
      await page.keyboard.press('Enter');
      // Zoomed into the grown function: it fills the width, so the middle of its row is red.
      const zoomed = await pixel(0.5);
      assert.ok((zoomed[0] ?? 0) > (zoomed[2] ?? 0) + 80, `zoomed frame: ${zoomed}`);
      await page.keyboard.press('Escape');
      const unzoomed = await pixel(1500 / 1800);
      assert.ok((unzoomed[2] ?? 0) > (unzoomed[0] ?? 0) + 80, `zoomed out again: ${unzoomed}`);
      await page.locator('#flame-search').fill('');
      await screenshot(page, 'compare-flame');
      assert.deepEqual(watch.dialogs, []);
      assert.deepEqual(watch.pageErrors, []);
      assert.deepEqual(watch.consoleErrors, []);
    } finally {
      await close();
    }
  });
});
