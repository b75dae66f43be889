import Module from 'node:module';
import { channels, publish } from '../diagnostics';

/**
 * Runs a patch when a CommonJS package is loaded, whether the app `require`s it
 * or `import`s it, and on the copies already loaded when the agent starts.
 *
 * Why `Module._load`: an ESM `import` of a CommonJS package goes through the
 * CommonJS loader (`Module._load` with the package's absolute entry path) and
 * lands in `require.cache`, like a `require` (with the bare name). So one wrapper
 * of `Module._load` sees both, on Node 20, 22 and 24, without a loader thread
 * (`module.register`) or an extra dependency (require-in-the-middle,
 * import-in-the-middle). The packages patched this way (pg, memcached, memjs,
 * mongodb) are all CommonJS; their ESM entry points (pg's `esm/index.mjs`)
 * re-export the CommonJS module, so patching its prototypes covers them too.
 *
 * Limits: an app whose CommonJS is compiled by a custom loader that supplies the
 * source itself (some `module.register` hooks) may bypass `Module._load`; such
 * packages are still patched when they were loaded before `start()` (the scan of
 * `require.cache`), or can be timed with `agent.time()`. Bundled apps (esbuild,
 * webpack) inline packages and are not seen.
 *
 * Cost: one string check per `require` call; nothing per library call.
 */

type Patcher = (exports: unknown) => void;

interface ModuleInternals {
  _load: (request: string, parent: unknown, isMain: boolean) => unknown;
  _cache: Record<string, { exports?: unknown } | undefined>;
}

const patchers = new Map<string, Patcher>();
let loaderWrapped = false;

/**
 * Calls `patcher(exports)` with the exports of every module of package `name`
 * loaded from now on, and with those already loaded. `patcher` must check the
 * shape of what it gets (it also sees the package's inner files when they are
 * loaded by absolute path) and must be idempotent.
 */
export function onPackageLoad(name: string, patcher: Patcher): void {
  patchers.set(name, patcher);
  wrapLoader();
  const cache = (Module as unknown as ModuleInternals)._cache;
  for (const filename of Object.keys(cache)) {
    if (packageOfPath(filename) === name) runPatcher(patcher, cache[filename]?.exports);
  }
}

function wrapLoader(): void {
  if (loaderWrapped) return;
  loaderWrapped = true;
  const internals = Module as unknown as ModuleInternals;
  const originalLoad = internals._load;
  internals._load = function loadWithErgometer(this: unknown, request: string): unknown {
    // biome-ignore lint/complexity/noArguments: passes the loader's arguments on untouched, whatever their number
    const exports = Reflect.apply(originalLoad, this, arguments);
    if (typeof request === 'string') {
      // Bare name (`require('pg')`) first: a Map lookup; then an absolute path (ESM import of CommonJS).
      const patcher = patchers.get(request) ?? patcherForPath(request);
      if (patcher !== undefined) runPatcher(patcher, exports);
    }
    return exports;
  };
}

function patcherForPath(request: string): Patcher | undefined {
  if (request.charCodeAt(0) !== 47 /* '/' */ && !/^[A-Za-z]:[\\/]/.test(request)) return undefined;
  const name = packageOfPath(request);
  return name === undefined ? undefined : patchers.get(name);
}

/** The package a file belongs to: the name after the last `node_modules/` of its path. */
export function packageOfPath(filename: string): string | undefined {
  const match = /[\\/]node_modules[\\/]((?:@[^\\/]+[\\/])?[^\\/]+)[\\/](?!.*[\\/]node_modules[\\/])/.exec(filename);
  return match?.[1]?.replace('\\', '/');
}

function runPatcher(patcher: Patcher, exports: unknown): void {
  if (exports === null || (typeof exports !== 'object' && typeof exports !== 'function')) return;
  try {
    patcher(exports);
  } catch (error) {
    // A library version whose shape we misread must not break the app's require().
    publish(channels.internalError, { error });
  }
}
