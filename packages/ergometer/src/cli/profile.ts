/**
 * `ergometer profile diff`: functions ranked by change in cost per request between two commits
 * (or two variants of a flag within one commit), from the profiles and request samples in the store.
 */
import { type DiffQuery, type ProfileDiff, profileDiff } from '../profile/diff';
import { integerOption, parseOptions, stringOption, usageError } from './args';
import { storeTarget, withStore } from './detect';

export const PROFILE_USAGE = `Usage: ergometer profile diff --service S --base C1 --head C2 [options]
       ergometer profile diff --service S --commit C --flag K --base-variant V1 --head-variant V2 [options]

Functions ranked by change in CPU cost per request (self cost; total beside it), from the
profiles the agent sends (profile: { enabled: true }) and the request samples.

  --db FILE | --clickhouse URL   the store (default ./ergometer.duckdb)
  --endpoint E                   only this endpoint (default: all, weighted by requests)
  --from MS --to MS              only profiles that start in this range (ms since the epoch)
  --limit N                      functions printed (default 20; --json prints all)
  --json                         print the GET /v1/profiles/diff answer
`;

function formatCost(value: number): string {
  const abs = Math.abs(value);
  if (abs >= 1e9) return `${(value / 1e9).toFixed(2)}G`;
  if (abs >= 1e6) return `${(value / 1e6).toFixed(2)}M`;
  if (abs >= 1e3) return `${(value / 1e3).toFixed(1)}k`;
  return value.toFixed(0);
}

/** The diff as a table an engineer reads in a terminal. */
export function formatDiff(diff: ProfileDiff, limit: number): string {
  const unit = diff.metric === 'instructions' ? 'instructions' : 'CPU ns';
  const side = (s: ProfileDiff['base']) =>
    `${s.commit}${s.variant === null ? '' : ` (${s.variant})`}: ${formatCost(s.costPerRequest)} ${unit}/request, ${s.profiles} profiles, ${s.samples} samples`;
  const lines = [
    `${diff.service} ${diff.endpoint ?? '(all endpoints)'}`,
    `  base ${side(diff.base)}`,
    `  head ${side(diff.head)}`,
    '',
    '  Δ% of base   Δself      Δtotal     function (file:line)',
  ];
  for (const f of diff.functions.slice(0, limit)) {
    const pct = `${f.deltaPct >= 0 ? '+' : ''}${f.deltaPct.toFixed(2)}%`;
    lines.push(
      `  ${pct.padStart(10)}   ${formatCost(f.deltaSelf).padStart(8)}   ${formatCost(f.deltaTotal).padStart(8)}   ${f.function} (${f.file}:${f.line})`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/** `ergometer profile <subcommand>`: resolves with the exit code. */
export async function profileCommand(argv: string[], out: (text: string) => void): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    out(PROFILE_USAGE);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== 'diff') throw usageError(`unknown profile subcommand "${sub}"; the one there is: diff`);
  const values = parseOptions(rest, {
    db: { type: 'string' },
    clickhouse: { type: 'string' },
    service: { type: 'string' },
    base: { type: 'string' },
    head: { type: 'string' },
    commit: { type: 'string' },
    flag: { type: 'string' },
    'base-variant': { type: 'string' },
    'head-variant': { type: 'string' },
    endpoint: { type: 'string' },
    from: { type: 'string' },
    to: { type: 'string' },
    limit: { type: 'string' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help === true) {
    out(PROFILE_USAGE);
    return 0;
  }
  const service = stringOption(values, 'service');
  if (service === undefined) throw usageError('--service is required');
  const flag = stringOption(values, 'flag');
  let query: DiffQuery;
  if (flag === undefined) {
    const base = stringOption(values, 'base');
    const head = stringOption(values, 'head');
    if (base === undefined || head === undefined)
      throw usageError('--base and --head are required (or --commit and --flag)');
    query = { service, base: { commit: base }, head: { commit: head } };
  } else {
    const commit = stringOption(values, 'commit');
    const baseVariant = stringOption(values, 'base-variant');
    const headVariant = stringOption(values, 'head-variant');
    if (commit === undefined || baseVariant === undefined || headVariant === undefined) {
      throw usageError('a flag comparison needs --commit, --base-variant and --head-variant');
    }
    query = { service, flag, base: { commit, variant: baseVariant }, head: { commit, variant: headVariant } };
  }
  const endpoint = stringOption(values, 'endpoint');
  if (endpoint !== undefined) query.endpoint = endpoint;
  const from = integerOption(values, 'from', 0, Number.MAX_SAFE_INTEGER);
  const to = integerOption(values, 'to', 0, Number.MAX_SAFE_INTEGER);
  if (from !== undefined) query.from = from;
  if (to !== undefined) query.to = to;
  const diff = await withStore(storeTarget(values), (store) => profileDiff(store, query));
  if (values.json === true) out(`${JSON.stringify(diff, null, 2)}\n`);
  else out(formatDiff(diff, integerOption(values, 'limit', 1, 100_000) ?? 20));
  return 0;
}
