/**
 * `ergometer detect` and `ergometer compare`: the detectors once, from the command line, over the
 * same store `serve` writes (stop `serve` first when it is a DuckDB file: DuckDB has one writer).
 */
import path from 'node:path';
import { type Alert, describeProcesses, formatLevel } from '../detect/alert';
import { type DetectorConfig, loadDetectorConfig, resolveDetectorConfig } from '../detect/config';
import { explainRollout, explanationLines, latestRollout, type RolloutExplanation } from '../detect/explain';
import { ProcessSpreads } from '../detect/processes';
import { runDetectors } from '../detect/run';
import { benjaminiHochberg } from '../stats/multiple';
import type { Store } from '../store/types';
import { integerOption, parseOptions, stringOption, usageError } from './args';
import { openStore, type StoreTarget } from './open-store';

export const DETECT_USAGE = `Usage: ergometer detect [options]

Runs every detector (rollout, flag, trend, function) once and prints the alerts.

  --db FILE            embedded DuckDB file (default ./ergometer.duckdb)
  --clickhouse URL     ClickHouse instead of DuckDB
  --service S          only this service
  --config F           JSON config file; its "detectors" section tunes thresholds (docs/detectors.md)
  --json               print the alerts as a JSON array (SPEC §5)
  --fail-on-alert      exit with 1 when an open (unresolved) alert is found
  --now MS             evaluate as of this time (ms since the epoch; default now)

  --explain ENDPOINT   instead of the alerts, why the rollout test of one endpoint alerted or not: each
                       look it made (its change, interval and p-value against the share of alpha the look
                       may spend) against the endpoint's threshold. Needs --service.
  --commit C           with --explain: the commit whose rollout to explain (default: the service's latest)
`;

export const COMPARE_USAGE = `Usage: ergometer compare --service S --base C1 --head C2 [options]

Per-endpoint change in mean CPU cost per request from commit C1 to commit C2, with confidence
intervals (95% unless the config's "confidence" says otherwise) and p-values corrected for the number
of endpoints (Benjamini–Hochberg).

  --db FILE | --clickhouse URL   the store (default ./ergometer.duckdb)
  --endpoint E                   only this endpoint
  --config F                     JSON config file (its "detectors" section: learnProcessSpread, confidence)
  --json                         print JSON

The two commits are two groups of processes: the intervals are widened by how much processes of the
same code differ, as the rollout detector's are (docs/detectors.md, "What is compared").
`;

export function storeTarget(values: Record<string, string | boolean | undefined>): StoreTarget {
  const clickhouse = stringOption(values, 'clickhouse');
  const db = stringOption(values, 'db');
  if (clickhouse !== undefined && db !== undefined) throw usageError('give either --db or --clickhouse, not both');
  return clickhouse !== undefined ? { clickhouse } : { db: path.resolve(db ?? 'ergometer.duckdb') };
}

/** The detectors' config from `--config F`, else the defaults. */
function configOption(values: Record<string, string | boolean | undefined>): DetectorConfig {
  const configFile = stringOption(values, 'config');
  return configFile ? loadDetectorConfig(configFile) : resolveDetectorConfig();
}

export async function withStore<T>(target: StoreTarget, use: (store: Store) => Promise<T>): Promise<T> {
  const store = await openStore(target);
  try {
    return await use(store);
  } finally {
    await store.close();
  }
}

function pct(value: number): string {
  return `${value >= 0 ? '+' : ''}${value.toFixed(2)}%`;
}

/** `ergometer detect`: resolves with the exit code. */
export async function detectCommand(argv: string[], out: (text: string) => void): Promise<number> {
  const values = parseOptions(argv, {
    db: { type: 'string' },
    clickhouse: { type: 'string' },
    service: { type: 'string' },
    config: { type: 'string' },
    json: { type: 'boolean' },
    'fail-on-alert': { type: 'boolean' },
    now: { type: 'string' },
    explain: { type: 'string' },
    commit: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help === true) {
    out(DETECT_USAGE);
    return 0;
  }
  const config = configOption(values);
  const now = integerOption(values, 'now', 0, Number.MAX_SAFE_INTEGER) ?? Date.now();
  const service = stringOption(values, 'service');
  const explain = stringOption(values, 'explain');
  if (explain !== undefined) {
    if (service === undefined) throw usageError('--explain needs --service');
    if (values['fail-on-alert'] === true) throw usageError('--fail-on-alert does not apply to --explain');
    const commit = stringOption(values, 'commit');
    const explanation = await withStore(storeTarget(values), async (store) => {
      const target = commit ?? (await latestRollout(store, service));
      if (target === undefined) throw usageError(`no commit of service ${service} in the store`);
      return explainRollout(store, service, target, explain, config, now);
    });
    out(values.json === true ? `${JSON.stringify(explanation, null, 2)}\n` : describeExplanation(explanation));
    return 0;
  }
  if (stringOption(values, 'commit') !== undefined) throw usageError('--commit goes with --explain');
  const run = await withStore(storeTarget(values), (store) =>
    runDetectors(store, config, service === undefined ? { now } : { now, service }),
  );
  const open = run.alerts.filter((a) => a.resolvedBy === undefined);
  if (values.json === true) {
    out(`${JSON.stringify(run.alerts, null, 2)}\n`);
  } else {
    for (const alert of run.alerts) out(`${describeForTerminal(alert)}\n`);
    out(
      `${run.tested} comparisons over ${run.services.length} service(s); ${open.length} open alert(s), ` +
        `${run.alerts.length - open.length} resolved.\n`,
    );
  }
  return values['fail-on-alert'] === true && open.length > 0 ? 1 : 0;
}

function describeExplanation(e: RolloutExplanation): string {
  const when = e.rolledOutAt !== undefined ? `, rolled out ${new Date(e.rolledOutAt).toISOString()}` : '';
  const lines = [`The rollout test of ${e.service} ${e.commit} at ${e.endpoint}${when}:`];
  for (const line of explanationLines(e)) lines.push(`  ${line}`);
  if (e.looks.length > 0) {
    lines.push(
      'An alert needs both conditions at a look: p ÷ its share of alpha below alpha once corrected for every test of ' +
        "the detectors' run (Benjamini–Hochberg, which only raises it), and a change at or above the threshold.",
    );
  }
  return `${lines.join('\n')}\n`;
}

function describeForTerminal(alert: Alert): string {
  const state = alert.resolvedBy !== undefined ? `resolved by ${alert.resolvedBy}` : 'open';
  return `[${alert.kind}, ${state}] ${alert.summary}`;
}

/** `ergometer compare`: resolves with the exit code. */
export async function compareCommand(argv: string[], out: (text: string) => void): Promise<number> {
  const values = parseOptions(argv, {
    db: { type: 'string' },
    clickhouse: { type: 'string' },
    service: { type: 'string' },
    base: { type: 'string' },
    head: { type: 'string' },
    endpoint: { type: 'string' },
    config: { type: 'string' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help === true) {
    out(COMPARE_USAGE);
    return 0;
  }
  const service = stringOption(values, 'service');
  const base = stringOption(values, 'base');
  const head = stringOption(values, 'head');
  if (!service || !base || !head) throw usageError('--service, --base and --head are required');
  const endpoint = stringOption(values, 'endpoint');
  const config = configOption(values);
  // One endpoint: only its rows are read (each endpoint's comparison is its own).
  const only = endpoint === undefined ? {} : { endpoint };
  const rows = await withStore(storeTarget(values), (store) =>
    new ProcessSpreads(store, Date.now(), config).compare(
      service,
      { commit: base, ...only },
      { commit: head, ...only },
      2,
    ),
  );
  const adjusted = benjaminiHochberg(rows.map((c) => c.pValue));
  if (values.json === true) {
    out(
      `${JSON.stringify(
        rows.map((c, i) => ({ ...c, confidence: config.confidence, pValueAdjusted: adjusted[i] })),
        null,
        2,
      )}\n`,
    );
    return 0;
  }
  if (rows.length === 0) {
    out(`no endpoint of ${service} has samples under both ${base} and ${head}\n`);
    return 0;
  }
  const table = [
    ['endpoint', 'samples', `mean ${base}`, `mean ${head}`, 'change', `${formatLevel(config.confidence)} CI`, 'p (BH)'],
    ...rows.map((c, i) => [
      c.endpoint,
      `${c.n.baseline}/${c.n.candidate}`,
      Math.round(c.costMean.baseline).toString(),
      Math.round(c.costMean.candidate).toString(),
      pct(c.changePct),
      `${pct(c.ci[0])} … ${pct(c.ci[1])}`,
      (adjusted[i] as number).toPrecision(2),
    ]),
  ];
  const widths = (table[0] as string[]).map((_, col) => Math.max(...table.map((r) => (r[col] as string).length)));
  for (const row of table) out(`${row.map((cell, col) => cell.padEnd(widths[col] as number)).join('  ')}\n`);
  out(
    `cost in ${rows[0]?.metric === 'instructions' ? 'instructions' : 'CPU ns'} per request; costs compared within each host class.\n`,
  );
  const spread = rows.find((c) => c.processes?.spreadPct !== undefined)?.processes?.spreadPct;
  if (spread !== undefined) {
    out(
      `intervals widened: processes of the same code differ by ~${spread.toFixed(1)}% (processes a side: ${rows
        .map((c) => `${c.endpoint} ${describeProcesses(c.processes)}`)
        .join(', ')}).\n`,
    );
  }
  return 0;
}
