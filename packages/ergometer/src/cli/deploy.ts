/**
 * `ergometer deploy --service S --commit C [--ts ms] [--collector URL] [--token T]`: records a
 * rollout by posting `{service, commit, ts}` to the collector's `POST /v1/deploys`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { ErgometerError } from '../errors';
import { splitTokens, tokenFileFor } from '../server/token-file';
import { integerOption, parseOptions, stringOption, usageError } from './args';

export const DEPLOY_USAGE = `Usage: ergometer deploy --service S --commit C [--ts ms] [--collector URL] [--token T]

Records a rollout of commit C of service S (POST /v1/deploys).

  --service S        the service (required)
  --commit C         the commit being rolled out (required)
  --ts MS            when, ms since the epoch (default: now)
  --collector URL    the collector (default: ERGOMETER_COLLECTOR, else http://127.0.0.1:7070)
  --token T          an ingest token (default: ERGOMETER_TOKEN, ERGOMETER_INGEST_TOKEN,
                     else the token file given by --token-file or ./ergometer.tokens.json)
  --token-file F     read the ingest token from this file
`;

function tokenFromFile(file: string): string | undefined {
  if (!existsSync(file)) return undefined;
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as { ingestTokens?: unknown };
    const first = Array.isArray(parsed.ingestTokens) ? parsed.ingestTokens[0] : undefined;
    return typeof first === 'string' ? first : undefined;
  } catch {
    return undefined;
  }
}

/** Runs `ergometer deploy`; resolves with the exit code. */
export async function deployCommand(
  argv: string[],
  env: NodeJS.ProcessEnv,
  out: (line: string) => void,
): Promise<number> {
  const values = parseOptions(argv, {
    service: { type: 'string' },
    commit: { type: 'string' },
    ts: { type: 'string' },
    collector: { type: 'string' },
    token: { type: 'string' },
    'token-file': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help === true) {
    out(DEPLOY_USAGE);
    return 0;
  }
  const service = stringOption(values, 'service');
  const commit = stringOption(values, 'commit');
  if (service === undefined || service === '') throw usageError('--service is required');
  if (commit === undefined || commit === '') throw usageError('--commit is required');
  const ts = integerOption(values, 'ts', 0, Number.MAX_SAFE_INTEGER) ?? Date.now();
  const collector = (stringOption(values, 'collector') ?? env.ERGOMETER_COLLECTOR ?? 'http://127.0.0.1:7070').replace(
    /\/+$/,
    '',
  );
  if (!/^https?:\/\//.test(collector))
    throw usageError(`--collector: expected an http:// or https:// URL, got ${JSON.stringify(collector)}`);
  const tokenFile = stringOption(values, 'token-file');
  const token =
    stringOption(values, 'token') ??
    splitTokens(env.ERGOMETER_TOKEN)[0] ??
    splitTokens(env.ERGOMETER_INGEST_TOKEN)[0] ??
    tokenFromFile(tokenFile ?? tokenFileFor('ergometer.duckdb'));
  if (token === undefined) {
    throw usageError(
      "no ingest token: pass --token, set ERGOMETER_TOKEN, or point --token-file at the collector's token file",
    );
  }

  let response: Response;
  try {
    response = await fetch(`${collector}/v1/deploys`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ service, commit, ts }),
    });
  } catch (error) {
    const cause = (error as { cause?: { message?: string } }).cause?.message ?? (error as Error).message;
    throw new ErgometerError(
      'ERGOMETER_COLLECTOR_UNREACHABLE',
      1,
      `could not reach the collector at ${collector}: ${cause}`,
    );
  }
  const text = await response.text();
  if (!response.ok) {
    let message = text;
    try {
      const parsed = JSON.parse(text) as { error?: { code?: string; message?: string } };
      if (parsed.error?.message !== undefined) message = `${parsed.error.code}: ${parsed.error.message}`;
    } catch {
      // not JSON: show the text as it came
    }
    throw new ErgometerError('ERGOMETER_DEPLOY_FAILED', 1, `the collector answered ${response.status}: ${message}`);
  }
  out(`recorded deploy of ${service} at commit ${commit} (${new Date(ts).toISOString()})\n`);
  return 0;
}
