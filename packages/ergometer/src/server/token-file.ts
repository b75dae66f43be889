/**
 * Where `ergometer serve` gets its tokens: from flags or environment variables
 * (`--ingest-token` / `ERGOMETER_INGEST_TOKEN`, `--read-token` / `ERGOMETER_READ_TOKEN`, each a
 * comma-separated list), else from a token file beside the database. When the file does not exist
 * the missing kinds are generated and written there with mode 0600, so a restart keeps them.
 * Tokens are never logged; only the file's path is printed.
 */
import { randomBytes } from 'node:crypto';
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ErgometerError } from '../errors';

export interface TokenFileContents {
  ingestTokens: string[];
  readTokens: string[];
}

export interface ResolvedTokens extends TokenFileContents {
  /** The token file used, or null when both kinds came from flags or the environment. */
  file: string | null;
  /** True when this call generated (and wrote) at least one token. */
  generated: boolean;
}

/** Splits a comma-separated token list; blanks are dropped. */
export function splitTokens(list: string | undefined): string[] {
  if (list === undefined) return [];
  return list
    .split(',')
    .map((token) => token.trim())
    .filter((token) => token.length > 0);
}

/** The default token file for a DuckDB path: `./data/ergometer.duckdb` → `./data/ergometer.tokens.json`. */
export function tokenFileFor(dbPath: string | null): string {
  if (dbPath === null) return path.resolve('ergometer.tokens.json');
  const resolved = path.resolve(dbPath);
  const base = path.basename(resolved).replace(/\.duckdb$|\.db$/, '');
  return path.join(path.dirname(resolved), `${base}.tokens.json`);
}

function generateToken(kind: 'ingest' | 'read'): string {
  // 32 random bytes: 256 bits, far beyond guessing; the prefix tells a reader which kind a token is.
  return `erg_${kind}_${randomBytes(32).toString('base64url')}`;
}

async function readTokenFile(file: string): Promise<TokenFileContents | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  const mode = (await stat(file)).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new ErgometerError(
      'ERGOMETER_TOKEN_FILE_MODE',
      0,
      `${file} is readable by other users (mode ${mode.toString(8)}); run chmod 600 ${JSON.stringify(file)} and restart`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const isList = (value: unknown): value is string[] =>
    Array.isArray(value) && value.length > 0 && value.every((t) => typeof t === 'string' && t.length > 0);
  const contents = parsed as Partial<TokenFileContents> | undefined;
  if (!isList(contents?.ingestTokens) || !isList(contents?.readTokens)) {
    throw new ErgometerError(
      'ERGOMETER_TOKEN_FILE_INVALID',
      0,
      `${file} is not a token file ({"ingestTokens": [...], "readTokens": [...]}); fix it or delete it to generate new tokens`,
    );
  }
  return { ingestTokens: contents.ingestTokens, readTokens: contents.readTokens };
}

/**
 * Resolves the ingest and read tokens. Given lists win; a kind not given comes from `file`, which
 * is created (mode 0600, exclusive create so two collectors starting together cannot both write
 * it) when it does not exist.
 */
export async function resolveTokens(options: {
  ingestTokens: string[];
  readTokens: string[];
  file: string;
}): Promise<ResolvedTokens> {
  const { ingestTokens, readTokens, file } = options;
  if (ingestTokens.length > 0 && readTokens.length > 0) {
    return { ingestTokens, readTokens, file: null, generated: false };
  }
  let stored = await readTokenFile(file);
  let generated = false;
  if (stored === undefined) {
    const fresh: TokenFileContents = { ingestTokens: [generateToken('ingest')], readTokens: [generateToken('read')] };
    try {
      await writeFile(file, `${JSON.stringify(fresh, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
      // The umask cannot widen 0600, but be explicit in case the file system ignores the create mode.
      await chmod(file, 0o600);
      stored = fresh;
      generated = true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new ErgometerError(
          'ERGOMETER_TOKEN_FILE_UNWRITABLE',
          0,
          `could not create the token file ${file} (${(error as Error).message}); give tokens with --ingest-token and --read-token, or a writable --token-file`,
        );
      }
      stored = await readTokenFile(file);
      if (stored === undefined) throw error;
    }
  }
  return {
    ingestTokens: ingestTokens.length > 0 ? ingestTokens : stored.ingestTokens,
    readTokens: readTokens.length > 0 ? readTokens : stored.readTokens,
    file,
    generated,
  };
}
