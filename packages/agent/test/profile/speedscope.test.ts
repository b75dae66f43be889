/**
 * "A speedscope import of it renders": a profile the agent wrote is opened in speedscope's own built app
 * (the `speedscope` npm package, served from this machine: no CDN, no network) in headless Chromium.
 * speedscope draws its flame chart on a canvas, so the names are read where it also writes them as
 * text: the sandwich view's function table, which lists every frame of the imported profile. The
 * flame chart's canvas must be there and drawn too.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { it } from 'node:test';
import { chromium } from 'playwright-core';
import { decodePprof, startInTempDir } from './harness';

const RELEASE = path.join(path.dirname(require.resolve('speedscope/package.json')), 'dist', 'release');
const TYPES: Record<string, string> = {
  '.html': 'text/html',
  '.js': 'text/javascript',
  '.css': 'text/css',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
};

function chromiumPath(): string {
  return execFileSync('sh', ['-c', 'command -v chromium || command -v chromium-browser'], { encoding: 'utf8' }).trim();
}

it('speedscope imports the exported pprof and shows our function names', async (t) => {
  let server: http.Server | undefined;
  let browser: Awaited<ReturnType<typeof chromium.launch>> | undefined;
  t.after(async () => {
    await browser?.close().catch(() => undefined);
    server?.close();
  });
  const { app, dir } = await startInTempDir(t, { profile: { enabled: true, dutyCycle: 1, intervalMicros: 2000 } });
  await app.load(20, 2, 1500);
  await app.shutdown();
  const profilesDir = path.join(dir, 'samples.profiles');
  const file = readdirSync(profilesDir).find((name) => name.endsWith('.pb.gz'));
  assert.ok(file, 'a profile was written');
  const pprof = readFileSync(path.join(profilesDir, file));

  // speedscope's release folder and the profile, from one loopback server (it fetches #profileURL).
  server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://local');
    if (url.pathname === '/profile.pb.gz') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end(pprof);
      return;
    }
    const name = path.basename(url.pathname === '/' ? 'index.html' : url.pathname);
    try {
      const body = readFileSync(path.join(RELEASE, name));
      res.writeHead(200, { 'content-type': TYPES[path.extname(name)] ?? 'application/octet-stream' });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  browser = await chromium.launch({
    executablePath: chromiumPath(),
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 3000 } });
  const logs: string[] = [];
  page.on('console', (message) => logs.push(message.text()));
  const offline: string[] = [];
  await page.route('**/*', (route) => {
    if (route.request().url().startsWith(origin)) return route.continue();
    offline.push(route.request().url());
    return route.abort();
  });

  await page.goto(`${origin}/index.html#profileURL=${encodeURIComponent(`${origin}/profile.pb.gz`)}&title=ergometer`);
  // The flame chart (time order view) renders on a canvas once the import is done.
  // Page code as strings: this package compiles without the DOM library.
  await page.waitForFunction("document.querySelectorAll('canvas').length > 0", undefined, { timeout: 30_000 });
  assert.ok(
    logs.some((line) => line.includes('Importing as protobuf encoded pprof file')),
    `speedscope's importer: ${logs.join(' | ')}`,
  );
  const canvasSize = await page.evaluate<number>(
    "Math.max(...[...document.querySelectorAll('canvas')].map((c) => c.width * c.height))",
  );
  assert.ok(canvasSize > 0, 'the flame chart canvas is drawn');

  // Sandwich view: the function table, as text.
  await page.keyboard.press('3');
  await page.waitForFunction("document.body.textContent.includes('heavyPrimeSieve')", undefined, { timeout: 30_000 });
  const text = await page.evaluate<string>('document.body.textContent');
  assert.match(text, /heavyPrimeSieve/);
  // The light endpoint's function too, when it was sampled (the table renders only the rows in view: the
  // page is tall enough for this small profile's rows).
  const sampled = new Set(decodePprof(pprof).samples.flatMap((sample) => sample.stack.map((frame) => frame.name)));
  for (const name of ['lightChecksum']) {
    if (sampled.has(name)) assert.ok(text.includes(name), `${name} is in the profile but not in speedscope`);
  }
  assert.deepEqual(offline, [], 'no request left this machine');
});
