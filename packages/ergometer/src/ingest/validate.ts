/**
 * The wire format validator (SPEC §4 v1, and v2: docs/wire-format.md): JSON text → {@link IngestBatch},
 * or an ERGOMETER_BAD_BATCH error whose message names the first bad field
 * (`samples[3].cost: expected a finite number ≥ 0, got "abc"`; in v2 `samples.cost[3]: …`). Both
 * versions give the same IngestBatch for the same samples.
 *
 * Hand-written on purpose: it runs for every sample the fleet sends, and a loop of typeof checks
 * is several times faster than a generic schema library. Field paths are only built when a check
 * fails, so a valid batch allocates nothing but its output.
 *
 * Unknown fields are ignored (newer agents may send more), but their nesting is bounded by the
 * raw-byte depth scan that runs before JSON.parse.
 */

import { decodeUsersSketch } from '@ergometer/agent/users-sketch';
import { badRequest, ErgometerError } from '../errors';
import type { CheckIn } from '../server/profiling-coordinator';
import type { Deploy, IngestBatch, Metric } from '../store/types';
import { jsonDepthExceeds } from './json-depth';
import type { IngestLimits } from './limits';

type Sample = IngestBatch['samples'][number];

const MINUTE_MS = 60_000;
/** 2000-01-01T00:00:00Z: no deploy recorded by ergometer happened before. */
const EARLIEST_DEPLOY_MS = 946_684_800_000;

/**
 * Control characters (C0 and DEL) and lone UTF-16 surrogates: neither belongs in a name, and a lone
 * surrogate cannot be written as UTF-8 by the stores.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const BAD_CHARS = /[\u0000-\u001f\u007f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

/** A short, printable rendering of a bad value for an error message. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'object':
      return 'an object';
    case 'string': {
      const shown = value.length > 40 ? `${value.slice(0, 40)}…` : value;
      return `${JSON.stringify(shown)}${value.length > 40 ? ` (${value.length} characters)` : ''}`;
    }
    case 'number':
      return String(value);
    case 'boolean':
      return String(value);
    default:
      return typeof value;
  }
}

function fail(code: string, path: string, expected: string, value: unknown): never {
  throw badRequest(code, `${path}: expected ${expected}, got ${describeValue(value)}`);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Parses a JSON body after bounding its nesting. Errors are ERGOMETER_BAD_BATCH-style 400s under
 * `code`, saying what is wrong with the text.
 */
export function parseJsonBody(body: Uint8Array, limits: IngestLimits, code: string): unknown {
  if (jsonDepthExceeds(body, limits.maxJsonDepth)) {
    throw badRequest(code, `body: JSON nested deeper than ${limits.maxJsonDepth} levels; the wire format needs 4`);
  }
  const text = Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw badRequest(code, `body: not valid JSON (${(error as Error).message})`);
  }
}

/** Endpoint names already checked, each as one string (see Checker.endpoint); emptied when full. */
const endpointNames = new Map<string, string>();
const MAX_INTERNED_ENDPOINTS = 8192;

/**
 * Where a checked value sits, as text for an error message: called only when a check fails. The
 * per-row paths are module constants reading the row (and flag key) from the checker, so that checking
 * a sample allocates no closure per field (~400 bytes per sample of garbage, measured, in a loop that
 * runs for every sample the fleet sends).
 */
type PathOf = (c: Checker) => string;

/** Validator for one kind of document; keeps the limits and error code at hand. */
class Checker {
  /** The row of `samples`, `counts` or `users` being checked (for the paths below). */
  row = 0;
  /** The flag key being checked. */
  flagKey = '';

  constructor(
    readonly limits: IngestLimits,
    readonly code: string,
    readonly receivedAt: number,
  ) {}

  /** A string of 1..max (or 0..max when `allowEmpty`) UTF-16 units, without control characters. */
  name(value: unknown, path: PathOf, max: number, allowEmpty = false): string {
    if (typeof value !== 'string') fail(this.code, path(this), `a string`, value);
    if (value.length > max || (!allowEmpty && value.length === 0)) {
      fail(this.code, path(this), `a string of ${allowEmpty ? 0 : 1} to ${max} characters`, value);
    }
    if (BAD_CHARS.test(value)) {
      fail(this.code, path(this), 'a string without control characters or unpaired surrogates', value);
    }
    return value;
  }

  /**
   * An endpoint name (as {@link name}), interned: JSON.parse makes a new string for each of a batch's
   * thousand "GET /api/search"; the batch is held until its group commit, so one shared copy is less
   * for the garbage collector to move, and its hash, computed once, serves every later lookup
   * (cardinality guard, roll-up). A name met before skips the character check (it depends on nothing
   * but the string), not the length limit.
   */
  endpoint(value: unknown, path: PathOf): string {
    const max = this.limits.maxEndpointLength;
    if (typeof value === 'string') {
      const known = endpointNames.get(value);
      if (known !== undefined && known.length <= max) return known;
    }
    const name = this.name(value, path, max);
    if (endpointNames.size >= MAX_INTERNED_ENDPOINTS) endpointNames.clear();
    endpointNames.set(name, name);
    return name;
  }

  optionalName(value: unknown, path: PathOf, max: number): string {
    return value === undefined ? '' : this.name(value, path, max, true);
  }

  /** A finite number in [min, max]; `minExclusive` makes the lower bound strict. */
  number(value: unknown, path: PathOf, min: number, max: number, minExclusive = false): number {
    if (
      typeof value !== 'number' ||
      !Number.isFinite(value) ||
      value > max ||
      (minExclusive ? !(value > min) : !(value >= min))
    ) {
      fail(this.code, path(this), `a finite number ${minExclusive ? '>' : '≥'} ${min} and ≤ ${max}`, value);
    }
    return value;
  }

  /** An integer HTTP status code, 100 to 599. */
  status(value: unknown, path: PathOf): number {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 100 || value > 599) {
      fail(this.code, path(this), 'an integer HTTP status from 100 to 599', value);
    }
    return value;
  }

  /** Milliseconds since the epoch within the accepted window around the receive time, truncated to an integer. */
  time(value: unknown, path: PathOf): number {
    const earliest = this.receivedAt - this.limits.maxPastMs;
    const latest = this.receivedAt + this.limits.maxFutureMs;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < earliest || value > latest) {
      fail(
        this.code,
        path(this),
        `milliseconds since the epoch between ${new Date(earliest).toISOString()} and ${new Date(latest).toISOString()} (the collector's clock)`,
        value,
      );
    }
    return Math.trunc(value);
  }

  array(value: unknown, path: string, max: number, what: string): unknown[] {
    if (!Array.isArray(value)) fail(this.code, path, 'an array', value);
    if (value.length > max) {
      throw badRequest(
        this.code,
        `${path}: at most ${max} ${what} per batch, got ${value.length}; send smaller batches`,
      );
    }
    return value;
  }
}

function metricOf(value: unknown, code: string): Metric {
  if (value === 'instructions' || value === 'cpu_ns') return value;
  return fail(code, 'metric', '"instructions" or "cpu_ns"', value);
}

/**
 * Validates a parsed wire-format batch, v1 (samples as objects) or v2 (samples as columns). `receivedAt`
 * (server clock, ms) is stored with the batch and bounds the accepted `ts` window.
 *
 * @throws ErgometerError ERGOMETER_BAD_BATCH (400) naming the first bad field, or
 *   ERGOMETER_UNSUPPORTED_VERSION (400) for a `v` other than 1 or 2.
 */
export function validateBatch(value: unknown, limits: IngestLimits, receivedAt: number): IngestBatch {
  const code = 'ERGOMETER_BAD_BATCH';
  if (!isObject(value)) fail(code, 'body', 'a JSON object (wire format v1 or v2)', value);
  if (value.v !== 1 && value.v !== 2) {
    if (value.v === undefined) fail(code, 'v', 'the wire format version, 1 or 2', value.v);
    throw new ErgometerError(
      'ERGOMETER_UNSUPPORTED_VERSION',
      400,
      `v: this collector speaks wire formats 1 and 2, got ${describeValue(value.v)}; upgrade the collector or pin the agent`,
    );
  }
  const c = new Checker(limits, code, receivedAt);
  const maxName = limits.maxNameLength;
  const batchId = c.name(value.batchId, () => 'batchId', maxName);
  const service = c.name(value.service, () => 'service', maxName);
  const commit = c.name(value.commit, () => 'commit', maxName);
  const host = c.optionalName(value.host, () => 'host', limits.maxEndpointLength);
  const region = c.optionalName(value.region, () => 'region', maxName);
  const hostClass = c.optionalName(value.hostClass, () => 'hostClass', maxName);
  const metric = metricOf(value.metric, code);

  let agentVersion = '';
  let runtime = '';
  let dropped = 0;
  if (value.agent !== undefined) {
    const agent = value.agent;
    if (!isObject(agent)) fail(code, 'agent', 'an object', agent);
    agentVersion = c.optionalName(agent.version, () => 'agent.version', maxName);
    runtime = c.optionalName(agent.runtime, () => 'agent.runtime', maxName);
    c.optionalName(agent.counter, () => 'agent.counter', maxName);
    if (agent.dropped !== undefined) {
      dropped = c.number(agent.dropped, () => 'agent.dropped', 0, Number.MAX_SAFE_INTEGER);
      if (!Number.isInteger(dropped)) fail(code, 'agent.dropped', 'an integer ≥ 0', dropped);
    }
  }

  let samples: Sample[];
  if (value.v === 2) samples = value.samples === undefined ? [] : validateColumns(c, value.samples);
  else {
    const rawSamples =
      value.samples === undefined ? [] : c.array(value.samples, 'samples', limits.maxSamplesPerBatch, 'samples');
    samples = new Array(rawSamples.length);
    for (let i = 0; i < rawSamples.length; i++) samples[i] = validateSample(c, rawSamples[i], i);
  }

  const rawCounts =
    value.counts === undefined ? [] : c.array(value.counts, 'counts', limits.maxCountsPerBatch, 'counts rows');
  const counts: IngestBatch['counts'] = new Array(rawCounts.length);
  for (let i = 0; i < rawCounts.length; i++) {
    const row = rawCounts[i];
    if (!isObject(row)) fail(code, `counts[${i}]`, 'an object', row);
    c.row = i;
    const minute = c.time(row.minute, COUNTS_MINUTE);
    const endpoint = c.endpoint(row.endpoint, COUNTS_ENDPOINT);
    const requests = c.number(row.requests, COUNTS_REQUESTS, 0, limits.maxWeight);
    if (!Number.isInteger(requests)) fail(code, COUNTS_REQUESTS(c), 'an integer ≥ 0', requests);
    counts[i] = { minute: minute - (minute % MINUTE_MS), endpoint, requests };
  }

  const rawUsers =
    value.users === undefined ? [] : c.array(value.users, 'users', limits.maxUsersPerBatch, 'users rows');
  const users: IngestBatch['users'] = new Array(rawUsers.length);
  for (let i = 0; i < rawUsers.length; i++) {
    const row = rawUsers[i];
    if (!isObject(row)) fail(code, `users[${i}]`, 'an object', row);
    c.row = i;
    const minute = c.time(row.minute, USERS_MINUTE);
    const sketch = row.sketch;
    if (typeof sketch !== 'string' || sketch.length > limits.maxSketchLength || !BASE64.test(sketch)) {
      fail(code, `users[${i}].sketch`, `a base64 string of at most ${limits.maxSketchLength} characters`, sketch);
    }
    // Decoded once here, so that one bad sketch is refused with its batch instead of failing every
    // later read of its service's active users (/v1/efficiency).
    try {
      decodeUsersSketch(sketch);
    } catch (error) {
      fail(code, `users[${i}].sketch`, `a users sketch (${(error as Error).message})`, sketch);
    }
    users[i] = { minute: minute - (minute % MINUTE_MS), sketch };
  }

  return {
    batchId,
    service,
    host,
    region,
    commit,
    hostClass,
    metric,
    agentVersion,
    runtime,
    dropped,
    receivedAt,
    samples,
    counts,
    users,
  };
}

/** The paths of a sample's fields, and below of a counts or users row's (see PathOf). */
const SAMPLE = {
  ts: (c: Checker) => `samples[${c.row}].ts`,
  endpoint: (c: Checker) => `samples[${c.row}].endpoint`,
  status: (c: Checker) => `samples[${c.row}].status`,
  cost: (c: Checker) => `samples[${c.row}].cost`,
  wallMs: (c: Checker) => `samples[${c.row}].wallMs`,
  db: (c: Checker) => `samples[${c.row}].backend.db`,
  cache: (c: Checker) => `samples[${c.row}].backend.cache`,
  http: (c: Checker) => `samples[${c.row}].backend.http`,
  flags: (c: Checker) => `samples[${c.row}].flags`,
  flagKey: (c: Checker) => `samples[${c.row}].flags key ${describeValue(c.flagKey)}`,
  flagVariant: (c: Checker) => `samples[${c.row}].flags[${JSON.stringify(c.flagKey)}]`,
  user: (c: Checker) => `samples[${c.row}].user`,
  weight: (c: Checker) => `samples[${c.row}].weight`,
} as const satisfies Record<string, PathOf>;
const COUNTS_MINUTE: PathOf = (c) => `counts[${c.row}].minute`;
const COUNTS_ENDPOINT: PathOf = (c) => `counts[${c.row}].endpoint`;
const COUNTS_REQUESTS: PathOf = (c) => `counts[${c.row}].requests`;
const USERS_MINUTE: PathOf = (c) => `users[${c.row}].minute`;

/** The flags of every sample that carries none (most of them): one shared, frozen object. */
const NO_FLAGS: Record<string, string> = Object.freeze(Object.create(null) as Record<string, string>);

/**
 * A sample's flags (key → variant), or NO_FLAGS for an empty object. `where` names the object in a
 * message, `keyPath` and `variantPath` a key or its variant (reading the row and key from the checker).
 */
function validateFlags(
  c: Checker,
  rawFlags: unknown,
  where: PathOf,
  keyPath: PathOf,
  variantPath: PathOf,
): Record<string, string> {
  const code = c.code;
  const limits = c.limits;
  if (!isObject(rawFlags)) fail(code, where(c), 'an object of flag key → variant', rawFlags);
  let n = 0;
  let own: Record<string, string> | undefined;
  for (const key in rawFlags) {
    if (++n > limits.maxFlagsPerSample) {
      throw badRequest(code, `${where(c)}: at most ${limits.maxFlagsPerSample} flags per sample`);
    }
    c.flagKey = key;
    c.name(key, keyPath, limits.maxNameLength);
    const variant = c.name(rawFlags[key], variantPath, limits.maxNameLength, true);
    own ??= {};
    // Assigning "__proto__" would set the prototype instead (or do nothing): a flag of that name is defined.
    if (key === '__proto__')
      Object.defineProperty(own, key, { value: variant, enumerable: true, writable: true, configurable: true });
    else own[key] = variant;
  }
  // Without a prototype, so that a flag named like an Object.prototype member reads as itself and an
  // absent one as undefined. Built as an ordinary object first: Object.create(null) would start a
  // hash-table object, ~100 bytes more per sample held until its group commit and slower to read.
  return own === undefined ? NO_FLAGS : (Object.setPrototypeOf(own, null) as Record<string, string>);
}

function validateSample(c: Checker, raw: unknown, i: number): Sample {
  const code = c.code;
  const limits = c.limits;
  if (!isObject(raw)) fail(code, `samples[${i}]`, 'an object', raw);
  c.row = i;
  const ts = c.time(raw.ts, SAMPLE.ts);
  const endpoint = c.endpoint(raw.endpoint, SAMPLE.endpoint);
  const status = c.status(raw.status, SAMPLE.status);
  const cost = c.number(raw.cost, SAMPLE.cost, 0, limits.maxCost);
  const wallMs = c.number(raw.wallMs, SAMPLE.wallMs, 0, limits.maxDurationMs);

  let db = 0;
  let cache = 0;
  let http = 0;
  const backend = raw.backend;
  if (backend !== undefined) {
    if (!isObject(backend)) fail(code, `samples[${i}].backend`, 'an object { db, cache, http }', backend);
    if (backend.db !== undefined) db = c.number(backend.db, SAMPLE.db, 0, limits.maxDurationMs);
    if (backend.cache !== undefined) {
      cache = c.number(backend.cache, SAMPLE.cache, 0, limits.maxDurationMs);
    }
    if (backend.http !== undefined) {
      http = c.number(backend.http, SAMPLE.http, 0, limits.maxDurationMs);
    }
  }

  const flags =
    raw.flags === undefined ? NO_FLAGS : validateFlags(c, raw.flags, SAMPLE.flags, SAMPLE.flagKey, SAMPLE.flagVariant);

  const user = c.optionalName(raw.user, SAMPLE.user, limits.maxNameLength);
  const weight = raw.weight === undefined ? 1 : c.number(raw.weight, SAMPLE.weight, 0, limits.maxWeight, true);
  let aborted = false;
  if (raw.aborted !== undefined) {
    if (typeof raw.aborted !== 'boolean') fail(code, `samples[${i}].aborted`, 'a boolean', raw.aborted);
    aborted = raw.aborted;
  }
  return { ts, endpoint, status, cost, wallMs, db, cache, http, flags, user, weight, aborted };
}

/** The valid indices of a dictionary of `length` entries, for an error message. */
function indexRange(length: number): string {
  return length === 0 ? ', which is empty' : ` (0 to ${length - 1})`;
}

/** The paths of wire format v2's columns and dictionaries (see PathOf). */
const COLUMN = {
  ts: (c: Checker) => `samples.ts[${c.row}]`,
  status: (c: Checker) => `samples.status[${c.row}]`,
  cost: (c: Checker) => `samples.cost[${c.row}]`,
  wallMs: (c: Checker) => `samples.wallMs[${c.row}]`,
  db: (c: Checker) => `samples.db[${c.row}]`,
  cache: (c: Checker) => `samples.cache[${c.row}]`,
  http: (c: Checker) => `samples.http[${c.row}]`,
  user: (c: Checker) => `samples.user[${c.row}]`,
  weight: (c: Checker) => `samples.weight[${c.row}]`,
  endpoints: (c: Checker) => `samples.endpoints[${c.row}]`,
  flagSet: (c: Checker) => `samples.flagSets[${c.row}]`,
  flagKey: (c: Checker) => `samples.flagSets[${c.row}] key ${describeValue(c.flagKey)}`,
  flagVariant: (c: Checker) => `samples.flagSets[${c.row}][${JSON.stringify(c.flagKey)}]`,
} as const satisfies Record<string, PathOf>;

/**
 * Wire format v2's samples: one array per field, all as long as `ts`, and two dictionaries that the
 * `endpoint` and `flags` columns index (docs/wire-format.md). The same checks as v1's, value by value,
 * and the same {@link Sample} objects out; a dictionary entry is checked once for all the samples that
 * use it, and samples that share a flag set share its (frozen) object.
 */
function validateColumns(c: Checker, raw: unknown): Sample[] {
  const code = c.code;
  const limits = c.limits;
  if (!isObject(raw)) fail(code, 'samples', 'an object of columns (wire format v2)', raw);
  const ts = c.array(raw.ts, 'samples.ts', limits.maxSamplesPerBatch, 'samples');
  const n = ts.length;
  const column = (name: string, required: boolean): unknown[] | undefined => {
    const value = raw[name];
    if (value === undefined && !required) return undefined;
    if (!Array.isArray(value) || value.length !== n) {
      fail(code, `samples.${name}`, `an array of ${n} values (as many as samples.ts)`, value);
    }
    return value;
  };
  const endpointColumn = column('endpoint', true) as unknown[];
  const statusColumn = column('status', true) as unknown[];
  const costColumn = column('cost', true) as unknown[];
  const wallColumn = column('wallMs', true) as unknown[];
  const dbColumn = column('db', false);
  const cacheColumn = column('cache', false);
  const httpColumn = column('http', false);
  const flagsColumn = column('flags', false);
  const userColumn = column('user', false);
  const weightColumn = column('weight', false);
  const abortedColumn = column('aborted', false);

  const rawEndpoints = c.array(raw.endpoints ?? [], 'samples.endpoints', limits.maxSamplesPerBatch, 'endpoint names');
  const endpoints: string[] = new Array(rawEndpoints.length);
  for (let j = 0; j < rawEndpoints.length; j++) {
    c.row = j;
    endpoints[j] = c.endpoint(rawEndpoints[j], COLUMN.endpoints);
  }
  const rawFlagSets = c.array(raw.flagSets ?? [], 'samples.flagSets', limits.maxSamplesPerBatch, 'flag sets');
  const flagSets: Record<string, string>[] = new Array(rawFlagSets.length);
  for (let j = 0; j < rawFlagSets.length; j++) {
    c.row = j;
    flagSets[j] = Object.freeze(
      validateFlags(c, rawFlagSets[j], COLUMN.flagSet, COLUMN.flagKey, COLUMN.flagVariant),
    ) as Record<string, string>;
  }

  const samples: Sample[] = new Array(n);
  for (let i = 0; i < n; i++) {
    c.row = i;
    const time = c.time(ts[i], COLUMN.ts);
    const e = endpointColumn[i];
    if (typeof e !== 'number' || !Number.isInteger(e) || e < 0 || e >= endpoints.length) {
      fail(code, `samples.endpoint[${i}]`, `an index into samples.endpoints${indexRange(endpoints.length)}`, e);
    }
    const status = c.status(statusColumn[i], COLUMN.status);
    const cost = c.number(costColumn[i], COLUMN.cost, 0, limits.maxCost);
    const wallMs = c.number(wallColumn[i], COLUMN.wallMs, 0, limits.maxDurationMs);
    const db = dbColumn === undefined ? 0 : c.number(dbColumn[i], COLUMN.db, 0, limits.maxDurationMs);
    const cache = cacheColumn === undefined ? 0 : c.number(cacheColumn[i], COLUMN.cache, 0, limits.maxDurationMs);
    const http = httpColumn === undefined ? 0 : c.number(httpColumn[i], COLUMN.http, 0, limits.maxDurationMs);
    let flags = NO_FLAGS;
    if (flagsColumn !== undefined) {
      const f = flagsColumn[i];
      if (typeof f !== 'number' || !Number.isInteger(f) || f < -1 || f >= flagSets.length) {
        fail(
          code,
          `samples.flags[${i}]`,
          `-1 (no flags) or an index into samples.flagSets${indexRange(flagSets.length)}`,
          f,
        );
      }
      if (f >= 0) flags = flagSets[f] as Record<string, string>;
    }
    const user = userColumn === undefined ? '' : c.name(userColumn[i], COLUMN.user, limits.maxNameLength, true);
    const weight = weightColumn === undefined ? 1 : c.number(weightColumn[i], COLUMN.weight, 0, limits.maxWeight, true);
    let aborted = false;
    if (abortedColumn !== undefined) {
      const a = abortedColumn[i];
      if (a !== 0 && a !== 1) fail(code, `samples.aborted[${i}]`, '0 or 1', a);
      aborted = a === 1;
    }
    samples[i] = {
      ts: time,
      endpoint: endpoints[e] as string,
      status,
      cost,
      wallMs,
      db,
      cache,
      http,
      flags,
      user,
      weight,
      aborted,
    };
  }
  return samples;
}

/**
 * Validates a `POST /v1/deploys` body `{service, commit, ts?}`; `ts` defaults to the receive time.
 *
 * @throws ErgometerError ERGOMETER_BAD_DEPLOY (400) naming the bad field.
 */
export function validateDeploy(value: unknown, limits: IngestLimits, receivedAt: number): Deploy {
  const code = 'ERGOMETER_BAD_DEPLOY';
  if (!isObject(value)) fail(code, 'body', 'a JSON object {service, commit, ts}', value);
  const c = new Checker(limits, code, receivedAt);
  const service = c.name(value.service, () => 'service', limits.maxNameLength);
  const commit = c.name(value.commit, () => 'commit', limits.maxNameLength);
  // A deploy may be recorded long after the fact (backfilling history), so only the future is bounded.
  const latest = receivedAt + limits.maxFutureMs;
  const ts = value.ts === undefined ? receivedAt : value.ts;
  if (typeof ts !== 'number' || !Number.isInteger(ts) || ts < EARLIEST_DEPLOY_MS || ts > latest) {
    fail(code, 'ts', `integer milliseconds since the epoch from 2000-01-01 to ${new Date(latest).toISOString()}`, ts);
  }
  return { service, commit, ts };
}

const CHECK_IN_STATES = ['asking', 'profiling', 'idle'] as const;

/** `POST /v1/profiling`: a process asks whether to profile, or checks in (server/profiling-coordinator.ts). */
export function validateCheckIn(value: unknown, limits: IngestLimits, receivedAt: number): CheckIn {
  const code = 'ERGOMETER_BAD_CHECK_IN';
  if (!isObject(value)) {
    fail(code, 'body', 'a JSON object {service, commit, host, instance, state, checkInMs}', value);
  }
  const c = new Checker(limits, code, receivedAt);
  const service = c.name(value.service, () => 'service', limits.maxNameLength);
  const commit = c.name(value.commit, () => 'commit', limits.maxNameLength);
  const host = c.optionalName(value.host, () => 'host', limits.maxEndpointLength);
  const instance = c.name(value.instance, () => 'instance', 100);
  const state = CHECK_IN_STATES.find((s) => s === value.state);
  if (state === undefined) fail(code, 'state', `one of ${CHECK_IN_STATES.join(', ')}`, value.state);
  const checkInMs = c.number(value.checkInMs, () => 'checkInMs', 100, 86_400_000);
  return { service, commit, host, instance, state, checkInMs };
}
