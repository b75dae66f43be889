// Bundles the dashboard (TypeScript + uPlot + CSS) into ../dist/dashboard with esbuild: one
// script, one stylesheet, the page shell. Run by `npm ci` (the package's prepare script) and by
// `npm run build`; nothing is fetched at run time (no CDN).
import { copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(here, '..', 'dist', 'dashboard');
mkdirSync(out, { recursive: true });

await build({
  entryPoints: { app: path.join(here, 'src', 'main.ts') },
  bundle: true,
  minify: true,
  sourcemap: false,
  format: 'iife',
  target: ['chrome110', 'firefox110', 'safari16'],
  outdir: out,
  logLevel: 'warning',
  legalComments: 'eof',
});
await build({
  entryPoints: { app: path.join(here, 'style.css') },
  bundle: true,
  minify: true,
  outdir: out,
  logLevel: 'warning',
});
for (const file of ['index.html', 'favicon.svg']) copyFileSync(path.join(here, file), path.join(out, file));
