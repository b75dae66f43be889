/**
 * `ergometer serve`: opens the store, resolves the tokens, starts the collector, runs retention
 * hourly, and shuts down gracefully on SIGTERM/SIGINT (stop accepting, finish in-flight requests,
 * write the queue, close the store).
 */

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { DetectorScheduler } from '../alerts/scheduler';
import { createSinks, type SinkConfig } from '../alerts/sinks';
import { AlertBook } from '../alerts/state';
import { type DetectorConfig, loadDetectorConfig, resolveDetectorConfig } from '../detect/config';
import { ErgometerError } from '../errors';
import type { IngestLimits } from '../ingest/limits';
import { createCollector } from '../server/collector';
import type { ProfilingPolicy } from '../server/profiling-coordinator';
import { scheduleRetention } from '../server/retention';
import { resolveTokens, splitTokens, tokenFileFor } from '../server/token-file';
import type { RetentionPolicy, Store } from '../store/types';
import { fractionOption, integerOption, parseOptions, stringOption, usageError } from './args';
import { openStore } from './open-store';

export const SERVE_USAGE = `Usage: ergometer serve [options]

Ingest, query API, detectors, alerts, and the dashboard at / (sign in with a read token).

  --port N                   port to listen on (default 7070; 0 picks a free one)
  --host H                   address to bind (default 127.0.0.1)
  --db FILE                  embedded DuckDB file (default ./ergometer.duckdb)
  --clickhouse URL           ClickHouse instead of DuckDB (http://user:pass@host:8123/db)
  --ingest-token T[,T…]      tokens for POST /v1/*  (or ERGOMETER_INGEST_TOKEN)
  --read-token T[,T…]        tokens for GET /v1/*   (or ERGOMETER_READ_TOKEN)
  --token-file F             where generated tokens are kept (default: beside the database,
                             ergometer.tokens.json for ./ergometer.duckdb), mode 0600
  --retention-days N         keep raw samples N days (default 14)
  --aggregate-retention-days N  keep aggregates, counts, users, deploys N days (default 400)
  --profile-retention-days N    keep pprof profiles N days (default 30)
  --profile-min-processes N  processes of each service × commit that profile at least (default 2)
  --profile-process-fraction F  beyond those, the fraction of a commit's processes that profile
                             (default 0.1); for agents whose profile.processFraction is "collector"
  --max-endpoints N          distinct endpoints per service (default 2000)
  --max-flag-keys N          distinct flag keys per service (default 500)
  --max-body-bytes N         request body limit on the wire (default 8388608)
  --queue-batches N          batches queued for the store before 429 (default 256)
  --config F                 JSON config: "detectors" (thresholds…, docs/detectors.md) and
                             "alerts" ({ "webhook": { "url", "headers" }, "slack": { "url" }, "log": true })
  --detect-interval S        run the detectors every S seconds (default 60; 0 turns them off)
  --webhook URL              also POST new alerts as JSON to URL
  --slack URL                also send new alerts to a Slack incoming webhook
  --alerts-file F            where alerts are remembered (default: beside the database,
                             ergometer.alerts.json for ./ergometer.duckdb)
`;

/** Runs `ergometer serve` until SIGTERM/SIGINT; resolves with the exit code. */
export async function serveCommand(
  argv: string[],
  env: NodeJS.ProcessEnv,
  out: (line: string) => void,
): Promise<number> {
  const values = parseOptions(argv, {
    port: { type: 'string' },
    host: { type: 'string' },
    db: { type: 'string' },
    clickhouse: { type: 'string' },
    'ingest-token': { type: 'string' },
    'read-token': { type: 'string' },
    'token-file': { type: 'string' },
    'retention-days': { type: 'string' },
    'aggregate-retention-days': { type: 'string' },
    'profile-retention-days': { type: 'string' },
    'profile-min-processes': { type: 'string' },
    'profile-process-fraction': { type: 'string' },
    'max-endpoints': { type: 'string' },
    'max-flag-keys': { type: 'string' },
    'max-body-bytes': { type: 'string' },
    'queue-batches': { type: 'string' },
    config: { type: 'string' },
    'detect-interval': { type: 'string' },
    webhook: { type: 'string' },
    slack: { type: 'string' },
    'alerts-file': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help === true) {
    out(SERVE_USAGE);
    return 0;
  }
  const port = integerOption(values, 'port', 0, 65535) ?? 7070;
  const host = stringOption(values, 'host') ?? '127.0.0.1';
  const clickhouse = stringOption(values, 'clickhouse');
  const dbOption = stringOption(values, 'db');
  if (clickhouse !== undefined && dbOption !== undefined)
    throw usageError('give either --db or --clickhouse, not both');
  const dbPath = clickhouse === undefined ? path.resolve(dbOption ?? 'ergometer.duckdb') : null;
  const retention: RetentionPolicy = {
    samplesDays: integerOption(values, 'retention-days', 1, 36_500) ?? 14,
    aggregatesDays: integerOption(values, 'aggregate-retention-days', 1, 36_500) ?? 400,
    profilesDays: integerOption(values, 'profile-retention-days', 1, 36_500) ?? 30,
  };
  const limits: Partial<IngestLimits> = {};
  const maxEndpoints = integerOption(values, 'max-endpoints', 1, 10_000_000);
  if (maxEndpoints !== undefined) limits.maxEndpointsPerService = maxEndpoints;
  const maxFlagKeys = integerOption(values, 'max-flag-keys', 1, 10_000_000);
  if (maxFlagKeys !== undefined) limits.maxFlagKeysPerService = maxFlagKeys;
  const maxBodyBytes = integerOption(values, 'max-body-bytes', 1024, 1 << 30);
  if (maxBodyBytes !== undefined) limits.maxBodyBytes = maxBodyBytes;
  const queueBatches = integerOption(values, 'queue-batches', 1, 1_000_000);
  const profiling: Partial<ProfilingPolicy> = {};
  const minProfiling = integerOption(values, 'profile-min-processes', 0, 1_000_000);
  if (minProfiling !== undefined) profiling.minProcesses = minProfiling;
  const profilingFraction = fractionOption(values, 'profile-process-fraction');
  if (profilingFraction !== undefined) profiling.processFraction = profilingFraction;
  const detectIntervalS = integerOption(values, 'detect-interval', 0, 86_400) ?? 60;
  const configFile = stringOption(values, 'config');
  const detectorConfig: DetectorConfig = configFile ? loadDetectorConfig(configFile) : resolveDetectorConfig();
  const sinkConfig: SinkConfig = configFile ? readSinkConfig(configFile) : {};
  const webhook = stringOption(values, 'webhook');
  if (webhook !== undefined) sinkConfig.webhook = { url: checkedUrl('--webhook', webhook) };
  const slack = stringOption(values, 'slack');
  if (slack !== undefined) sinkConfig.slack = { url: checkedUrl('--slack', slack) };
  const alertsFile = path.resolve(
    stringOption(values, 'alerts-file') ??
      (dbPath
        ? path.join(path.dirname(dbPath), `${path.basename(dbPath, '.duckdb')}.alerts.json`)
        : 'ergometer.alerts.json'),
  );
  const book = new AlertBook(alertsFile);

  // The store first: a backend that cannot open should not leave a fresh token file behind.
  const store: Store = await openStore(clickhouse !== undefined ? { clickhouse } : { db: dbPath as string });
  let tokens: Awaited<ReturnType<typeof resolveTokens>>;
  try {
    tokens = await resolveTokens({
      ingestTokens: splitTokens(stringOption(values, 'ingest-token') ?? env.ERGOMETER_INGEST_TOKEN),
      readTokens: splitTokens(stringOption(values, 'read-token') ?? env.ERGOMETER_READ_TOKEN),
      file: path.resolve(stringOption(values, 'token-file') ?? tokenFileFor(dbPath)),
    });
  } catch (error) {
    await store.close();
    throw error;
  }
  const collector = createCollector({
    store,
    ingestTokens: tokens.ingestTokens,
    readTokens: tokens.readTokens,
    limits,
    ...(queueBatches !== undefined ? { queue: { maxBatches: queueBatches } } : {}),
    read: { alerts: { book, config: detectorConfig } },
    profiling,
  });
  let address: Awaited<ReturnType<typeof collector.listen>>;
  try {
    address = await collector.listen(port, host);
  } catch (error) {
    await store.close();
    throw new ErgometerError(
      'ERGOMETER_LISTEN_FAILED',
      1,
      `could not listen on ${host}:${port}: ${(error as Error).message}; choose another --port or --host`,
    );
  }
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  out(
    `ergometer serve: listening on http://${shownHost}:${address.port} (store: ${clickhouse !== undefined ? 'clickhouse' : `duckdb ${dbPath}`})\n`,
  );
  out(`ergometer serve: dashboard at http://${shownHost}:${address.port}/ (sign in with a read token)\n`);
  if (tokens.file !== null) {
    out(
      `ergometer serve: tokens ${tokens.generated ? 'generated and stored' : 'read from'} ${tokens.file} (mode 0600)\n`,
    );
  }

  const stopRetention = scheduleRetention(store, retention, {
    log: (message) => out(`ergometer serve: ${message}\n`),
  });
  const detectors =
    detectIntervalS > 0
      ? new DetectorScheduler({
          store,
          config: detectorConfig,
          book,
          sinks: createSinks(sinkConfig),
          intervalMs: detectIntervalS * 1000,
          log: (message) => out(`ergometer serve: ${message}\n`),
        })
      : undefined;
  detectors?.start();
  out(
    detectors
      ? `ergometer serve: detectors every ${detectIntervalS} s; alerts kept in ${alertsFile}\n`
      : 'ergometer serve: detectors off (--detect-interval 0)\n',
  );

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        process.stderr.write(`ergometer serve: ${signal} again, exiting without draining\n`);
        process.exit(1);
      }
      stopping = true;
      out(`ergometer serve: ${signal}: draining and closing the store\n`);
      stopRetention();
      void (async () => {
        let code = 0;
        await detectors?.stop();
        try {
          await collector.close();
        } catch (error) {
          process.stderr.write(`ergometer serve: error while draining: ${(error as Error).message}\n`);
          code = 1;
        }
        try {
          await store.close();
        } catch (error) {
          process.stderr.write(`ergometer serve: error while closing the store: ${(error as Error).message}\n`);
          code = 1;
        }
        process.off('SIGTERM', stop);
        process.off('SIGINT', stop);
        out('ergometer serve: stopped\n');
        resolve(code);
      })();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}

function checkedUrl(flag: string, value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw usageError(`${flag}: expected an http(s) URL, got ${JSON.stringify(value)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw usageError(`${flag}: expected an http(s) URL`);
  return value;
}

/** The "alerts" section of the config file: which sinks get new alerts. */
function readSinkConfig(file: string): SinkConfig {
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as { alerts?: unknown };
  const section = parsed.alerts;
  if (section === undefined) return {};
  if (typeof section !== 'object' || section === null) {
    throw new ErgometerError('ERGOMETER_BAD_CONFIG', 1, `${file}: "alerts" must be an object`);
  }
  const config: SinkConfig = {};
  const { webhook, slack, log } = section as Record<string, unknown>;
  if (webhook !== undefined) {
    const w = webhook as { url?: unknown; headers?: unknown };
    if (typeof w.url !== 'string')
      throw new ErgometerError('ERGOMETER_BAD_CONFIG', 1, `${file}: alerts.webhook.url must be a URL`);
    config.webhook = { url: checkedUrl('alerts.webhook.url', w.url) };
    if (w.headers !== undefined) {
      if (
        typeof w.headers !== 'object' ||
        w.headers === null ||
        Object.values(w.headers).some((v) => typeof v !== 'string')
      )
        throw new ErgometerError(
          'ERGOMETER_BAD_CONFIG',
          1,
          `${file}: alerts.webhook.headers must map names to strings`,
        );
      config.webhook.headers = w.headers as Record<string, string>;
    }
  }
  if (slack !== undefined) {
    const url = (slack as { url?: unknown }).url;
    if (typeof url !== 'string')
      throw new ErgometerError('ERGOMETER_BAD_CONFIG', 1, `${file}: alerts.slack.url must be a URL`);
    config.slack = { url: checkedUrl('alerts.slack.url', url) };
  }
  if (log !== undefined) {
    if (typeof log !== 'boolean' && (typeof log !== 'object' || log === null))
      throw new ErgometerError(
        'ERGOMETER_BAD_CONFIG',
        1,
        `${file}: alerts.log must be true, false or { "json": true }`,
      );
    config.log = log as SinkConfig['log'];
  }
  return config;
}
