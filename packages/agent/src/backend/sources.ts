import { ErgometerError } from '../errors';

/**
 * Every backend instrumentation the agent has, by the name the `backend` option
 * and ERGOMETER_BACKEND use. Each one is charged to one kind (see SOURCE_KIND).
 */
export const BACKEND_SOURCES = [
  'http',
  'undici',
  'pg',
  'mysql2',
  'mongodb',
  'ioredis',
  'redis',
  'memcached',
  'memjs',
] as const;
export type BackendSource = (typeof BACKEND_SOURCES)[number];

/** Which instrumentations are on. */
export type BackendSources = Readonly<Record<BackendSource, boolean>>;

/**
 * The `backend` option: `true`/`false` for all, or per instrumentation
 * (`{ pg: false }`: every other one stays on).
 */
export type BackendOption = boolean | Partial<Record<BackendSource, boolean>>;

function allSources(on: boolean): Record<BackendSource, boolean> {
  return Object.fromEntries(BACKEND_SOURCES.map((source) => [source, on])) as Record<BackendSource, boolean>;
}

function isSource(name: string): name is BackendSource {
  return (BACKEND_SOURCES as readonly string[]).includes(name);
}

function bad(message: string, fromEnv: boolean): ErgometerError {
  // Named like every other option's error: the option, and its variable.
  const where = fromEnv ? 'backend (ERGOMETER_BACKEND)' : 'backend';
  return new ErgometerError(
    'ERGOMETER_BAD_OPTION',
    `ergometer: ${where}: ${message}; instrumentations: ${BACKEND_SOURCES.join(', ')}`,
  );
}

/**
 * Resolves the `backend` option, else ERGOMETER_BACKEND: `on` (the default) or
 * `off`; a list of instrumentations to turn on (`pg,ioredis,http`: only those);
 * or a list of ones to turn off (`-mongodb,-http`: all but those). An explicit
 * option wins over the variable. Throws ERGOMETER_BAD_OPTION naming an unknown one.
 */
export function resolveBackendSources(option: unknown, envValue: string | undefined): BackendSources {
  if (option !== undefined) {
    if (typeof option === 'boolean') return allSources(option);
    if (option === null || typeof option !== 'object' || Array.isArray(option)) {
      throw bad(`expected true, false or an object such as { pg: false }, got ${typeof option}`, false);
    }
    const sources = allSources(true);
    for (const [name, on] of Object.entries(option)) {
      if (!isSource(name)) throw bad(`unknown instrumentation "${name}"`, false);
      if (typeof on !== 'boolean') throw bad(`${name}: expected true or false, got ${typeof on}`, false);
      sources[name] = on;
    }
    return sources;
  }
  const value = (envValue ?? '').trim().toLowerCase();
  if (value === '' || value === 'on' || value === 'all' || value === '1' || value === 'true') return allSources(true);
  if (value === 'off' || value === 'none' || value === '0' || value === 'false') return allSources(false);
  const entries = value.split(',').map((entry) => entry.trim());
  const exclusions = entries.filter((entry) => entry.startsWith('-'));
  if (exclusions.length > 0 && exclusions.length < entries.length) {
    throw bad(`"${envValue}" mixes names to turn on and "-names" to turn off; use one or the other`, true);
  }
  const sources = allSources(exclusions.length > 0);
  for (const entry of entries) {
    const name = entry.startsWith('-') ? entry.slice(1) : entry;
    if (!isSource(name)) throw bad(`unknown instrumentation "${name}" in "${envValue}"`, true);
    sources[name] = exclusions.length === 0;
  }
  return sources;
}
