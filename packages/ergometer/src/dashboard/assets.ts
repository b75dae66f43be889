/**
 * The dashboard's static files, as `ergometer serve` answers them at `/`: the page shell (no data:
 * every number comes from the read API, with the read token the page keeps in sessionStorage),
 * the bundled script and the stylesheet. `npm ci` / `npm run build` bundle them from
 * `packages/ergometer/dashboard/` into `dist/dashboard/` (dashboard/build.mjs).
 *
 * Every answer carries a strict Content-Security-Policy: scripts and styles from this origin
 * only (no inline script, no eval), requests to this origin only, no frames, no plugins.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';

/** Where the build puts the bundle: dist/dashboard beside dist/src. */
export const DEFAULT_DASHBOARD_DIR = path.join(__dirname, '..', '..', 'dashboard');

/** The Content-Security-Policy of every dashboard response. */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "font-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** Headers of every dashboard response besides its type and length. */
export const DASHBOARD_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-security-policy': DASHBOARD_CSP,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
});

const FILES: Record<string, { file: string; type: string; cache: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8', cache: 'no-cache' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8', cache: 'no-cache' },
  '/assets/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8', cache: 'no-cache' },
  '/assets/app.css': { file: 'app.css', type: 'text/css; charset=utf-8', cache: 'no-cache' },
  '/assets/favicon.svg': { file: 'favicon.svg', type: 'image/svg+xml', cache: 'max-age=86400' },
};

export interface DashboardAsset {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** Serves the dashboard's files from one directory, read once and kept in memory (a few hundred KB). */
export class DashboardAssets {
  private readonly cache = new Map<string, Promise<Buffer>>();

  constructor(private readonly dir: string = DEFAULT_DASHBOARD_DIR) {}

  /** Whether `pathname` is one of the dashboard's routes. */
  has(pathname: string): boolean {
    return Object.hasOwn(FILES, pathname);
  }

  /**
   * The answer for a dashboard route: the file, or a 503 page saying how to build the dashboard
   * when the bundle is missing (a checkout where only `tsc -b` ran).
   */
  async answer(pathname: string): Promise<DashboardAsset> {
    const entry = FILES[pathname];
    if (entry === undefined) throw new Error(`not a dashboard route: ${pathname}`);
    let body: Buffer;
    try {
      let pending = this.cache.get(entry.file);
      if (pending === undefined) {
        pending = readFile(path.join(this.dir, entry.file));
        this.cache.set(entry.file, pending);
      }
      body = await pending;
    } catch {
      this.cache.delete(entry.file);
      const text = `The dashboard is not built (no ${path.join(this.dir, entry.file)}): run "npm run build" at the top of the repository, then restart ergometer serve.\n`;
      return {
        status: 503,
        headers: { ...DASHBOARD_HEADERS, 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' },
        body: Buffer.from(text),
      };
    }
    return {
      status: 200,
      headers: { ...DASHBOARD_HEADERS, 'content-type': entry.type, 'cache-control': entry.cache },
      body,
    };
  }
}
