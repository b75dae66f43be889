/**
 * What the dashboard tests stand on: a real `ergometer serve` (CLI, DuckDB file in a temp dir,
 * detectors every second), wire batches POSTed to it as an agent would, and Debian's Chromium
 * driven by playwright-core. Everything is torn down by the caller's `after`, passed or failed.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { addUserHash, createUsersSketch, encodeUsersSketch } from '@ergometer/agent/users-sketch';
import { type Browser, chromium, type Page } from 'playwright-core';
import type { IngestBatch } from '../../src/store/types';
import { HOUR, type Phase, scenarioBatches, toWire } from '../detect/scenario';

export const CLI = path.join(__dirname, '..', '..', 'src', 'cli', 'main.js');
export const REPO_ROOT = path.join(__dirname, '..', '..', '..', '..', '..');
/** Screenshots of every view (gitignored); the best are copied to docs/img by hand. */
export const ARTIFACTS = path.join(REPO_ROOT, 'test-artifacts', 'dashboard');
export const INGEST_TOKEN = 'dashboard-ingest-token';
export const READ_TOKEN = 'dashboard-read-token-7f3a';

export interface Serve {
  url: string;
  dir: string;
  process: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

/** Starts `ergometer serve` on a free port with a fresh DuckDB file; tokens from the environment (not argv). */
export async function startServe(): Promise<Serve> {
  const dir = mkdtempSync(path.join(tmpdir(), 'ergometer-dashboard-'));
  const child = spawn(
    process.execPath,
    [CLI, 'serve', '--db', path.join(dir, 'ergometer.duckdb'), '--port', '0', '--detect-interval', '1'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ERGOMETER_INGEST_TOKEN: INGEST_TOKEN, ERGOMETER_READ_TOKEN: READ_TOKEN },
    },
  );
  let output = '';
  child.stdout?.on('data', (c: Buffer) => {
    output += c.toString();
  });
  child.stderr?.on('data', (c: Buffer) => {
    output += c.toString();
  });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
  };
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start:\n${output}`)), 30_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code}:\n${output}`));
    });
    const check = () => {
      const match = /listening on (http:\/\/[^\s]+)/.exec(output);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1]);
      } else if (child.exitCode === null) setTimeout(check, 50);
    };
    check();
  }).catch(async (error: unknown) => {
    await stop();
    throw error;
  });
  return { url, dir, process: child, output: () => output, stop };
}

/** POSTs one batch as the agent does (gzip JSON, ingest token); throws unless 200. */
export async function postBatch(url: string, batch: IngestBatch): Promise<void> {
  const response = await fetch(`${url}/v1/samples`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${INGEST_TOKEN}`,
      'content-type': 'application/json',
      'content-encoding': 'gzip',
    },
    body: gzipSync(JSON.stringify(toWire(batch))),
  });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`POST /v1/samples: ${response.status} ${text}`);
}

/** GET a read route with the read token; returns the parsed JSON. */
export async function readApi<T>(url: string, route: string, params: Record<string, string | number> = {}): Promise<T> {
  const query = new URLSearchParams(Object.entries(params).map(([k, v]): [string, string] => [k, String(v)]));
  const response = await fetch(`${url}${route}?${query}`, { headers: { authorization: `Bearer ${READ_TOKEN}` } });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`GET ${route}: ${response.status} ${text}`);
  return JSON.parse(text) as T;
}

/**
 * The scenario's batches with what a real agent adds: backend times, and on the class-A batches
 * one `counts` row per minute and endpoint and a users sketch per minute (for the efficiency
 * figure). Deterministic.
 */
export function agentLikeBatches(service: string, phases: Phase[], seed: number): IngestBatch[] {
  const batches = scenarioBatches(service, phases, seed);
  let userBase = 0;
  for (const batch of batches) {
    for (const s of batch.samples) {
      s.db = Math.round(s.wallMs * 30) / 100;
      s.cache = Math.round(s.wallMs * 5) / 100;
      s.http = s.endpoint.includes('search') ? Math.round(s.wallMs * 20) / 100 : 0;
    }
    if (batch.hostClass !== 'A x2' || batch.samples.length === 0) continue;
    const first = Math.min(...batch.samples.map((s) => s.ts));
    const hourStart = Math.floor(first / HOUR) * HOUR;
    const endpoints = [...new Set(batch.samples.map((s) => s.endpoint))];
    for (let minute = hourStart; minute < hourStart + HOUR; minute += 60_000) {
      const m = (minute - hourStart) / 60_000;
      for (const endpoint of endpoints) batch.counts.push({ minute, endpoint, requests: 40 + ((m * 7) % 23) });
      // A daily peak: more users in some minutes than others.
      const users = createUsersSketch();
      const n = 60 + ((m * 13) % 50);
      for (let u = 0; u < n; u++)
        addUserHash(
          users,
          createHash('sha256')
            .update(`user-${userBase + u}`)
            .digest(),
        );
      userBase += 17;
      batch.users.push({ minute, sketch: encodeUsersSketch(users) });
    }
  }
  return batches;
}

/** Chromium from Debian (command -v chromium), headless, as the CI machine has it. */
export async function launchChromium(): Promise<Browser> {
  const found = spawnSync('sh', ['-c', 'command -v chromium'], { encoding: 'utf8' }).stdout.trim();
  if (!found) {
    throw new Error(
      'chromium not found: install the Debian package (apt-get install chromium); scripts/test-all.sh does',
    );
  }
  return chromium.launch({
    executablePath: found,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

/** Everything a page reports that a user would call broken: console errors, uncaught errors, dialogs. */
export interface PageWatch {
  consoleErrors: string[];
  pageErrors: string[];
  dialogs: string[];
}

/** A page at 1280×800 that records console errors, page errors and dialogs (and dismisses them). */
export async function watchedPage(browser: Browser): Promise<{ page: Page; watch: PageWatch; close(): Promise<void> }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const watch: PageWatch = { consoleErrors: [], pageErrors: [], dialogs: [] };
  page.on('console', (message) => {
    if (message.type() === 'error') watch.consoleErrors.push(message.text());
  });
  page.on('pageerror', (error) => watch.pageErrors.push(String(error)));
  page.on('dialog', (dialog) => {
    watch.dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    void dialog.dismiss();
  });
  return { page, watch, close: () => context.close() };
}

/** Signs in through the login form with the read token. */
export async function signIn(page: Page, url: string, hash = ''): Promise<void> {
  await page.goto(`${url}/${hash}`);
  await page.locator('#token').fill(READ_TOKEN);
  await page.locator('#login button[type=submit]').click();
  await page.locator('#view[data-ready="true"]').waitFor();
}

/** Navigates to a hash route and waits for the view to finish rendering. */
export async function openView(page: Page, hash: string, view: string): Promise<void> {
  // The view being replaced loses its ready mark first, so the wait below is for the new one.
  // String expressions: the test project is compiled without the DOM's types.
  await page.evaluate(
    `document.getElementById('view')?.removeAttribute('data-ready'); location.hash = ${JSON.stringify(hash)}`,
  );
  await page.locator(`#view[data-view="${view}"][data-ready="true"]`).waitFor();
  // Charts draw on the next frame: let it happen before a screenshot.
  await page.evaluate('new Promise((resolve) => requestAnimationFrame(() => resolve(null)))');
}

/** Saves a full-page screenshot of the current view under test-artifacts/dashboard. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  if (!existsSync(file)) throw new Error(`screenshot ${file} was not written`);
  return file;
}
