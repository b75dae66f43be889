/**
 * Rows of the two profile aggregate reads, as both backends return them: the same column names
 * (`commit` is `commit_id` in DuckDB, where COMMIT is a keyword), the same units.
 */
import type { Metric, ProfileEndpointRow, ProfileFunctionRow } from './types';

type Row = Record<string, unknown>;

/** The group of a profile sum row: commit, endpoint, metric, flag row and (byProfile) the profile. */
function groupOf(r: Row, byProfile: boolean, commitColumn: string) {
  return {
    commit: String(r[commitColumn]),
    endpoint: String(r.endpoint),
    metric: String(r.metric) as Metric,
    flagKey: String(r.flag_key),
    flagVariant: String(r.flag_variant),
    profileId: byProfile ? String(r.profile_id) : '',
  };
}

/** A `profileEndpoints` row from columns profiles, samples, cost. */
export function profileEndpointRow(r: Row, byProfile: boolean, commitColumn = 'commit'): ProfileEndpointRow {
  return {
    ...groupOf(r, byProfile, commitColumn),
    profiles: Number(r.profiles),
    samples: Number(r.samples),
    cost: Number(r.cost),
  };
}

/** A `profileFunctions` row from columns function_name, file_name, line and the four sums. */
export function profileFunctionRow(r: Row, byProfile: boolean, commitColumn = 'commit'): ProfileFunctionRow {
  return {
    ...groupOf(r, byProfile, commitColumn),
    function: String(r.function_name),
    file: String(r.file_name),
    line: Number(r.line),
    selfSamples: Number(r.self_samples),
    selfCost: Number(r.self_cost),
    totalSamples: Number(r.total_samples),
    totalCost: Number(r.total_cost),
  };
}
