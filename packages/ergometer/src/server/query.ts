/**
 * Query-string parsing for the read API: required and optional names, integer milliseconds,
 * each failure an ERGOMETER_BAD_QUERY (400) naming the parameter.
 */
import { badRequest } from '../errors';
import type { Metric, Range } from '../store/types';

// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]/;
const INTEGER = /^-?\d{1,16}$/;

export class QueryParams {
  constructor(private readonly params: URLSearchParams) {}

  /** A required name (service, commit…): 1..max characters, no control characters. */
  name(key: string, max = 256): string {
    const value = this.optionalName(key, max);
    if (value === undefined) throw badRequest('ERGOMETER_BAD_QUERY', `${key}: required query parameter (?${key}=…)`);
    return value;
  }

  optionalName(key: string, max = 256): string | undefined {
    const value = this.params.get(key);
    if (value === null || value === '') return undefined;
    if (value.length > max || CONTROL.test(value)) {
      throw badRequest('ERGOMETER_BAD_QUERY', `${key}: expected at most ${max} printable characters`);
    }
    return value;
  }

  /** An optional integer (ms since the epoch, bucket width…), bounded. */
  integer(key: string, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
    const value = this.params.get(key);
    if (value === null || value === '') return undefined;
    const parsed = Number(value);
    if (!INTEGER.test(value) || parsed < min || parsed > max) {
      throw badRequest(
        'ERGOMETER_BAD_QUERY',
        `${key}: expected an integer from ${min} to ${max}, got ${JSON.stringify(value.slice(0, 40))}`,
      );
    }
    return parsed;
  }

  /** `from` (inclusive) and `to` (exclusive), ms since the epoch; `from` must not be after `to`. */
  range(): Range {
    const from = this.integer('from');
    const to = this.integer('to');
    if (from !== undefined && to !== undefined && from > to) {
      throw badRequest('ERGOMETER_BAD_QUERY', `from (${from}) is after to (${to})`);
    }
    const range: Range = {};
    if (from !== undefined) range.from = from;
    if (to !== undefined) range.to = to;
    return range;
  }

  metric(required: boolean): Metric | undefined {
    const value = this.params.get('metric');
    if (value === null || value === '') {
      if (required)
        throw badRequest('ERGOMETER_BAD_QUERY', 'metric: required query parameter ("instructions" or "cpu_ns")');
      return undefined;
    }
    if (value !== 'instructions' && value !== 'cpu_ns') {
      throw badRequest(
        'ERGOMETER_BAD_QUERY',
        `metric: expected "instructions" or "cpu_ns", got ${JSON.stringify(value.slice(0, 40))}`,
      );
    }
    return value;
  }
}
