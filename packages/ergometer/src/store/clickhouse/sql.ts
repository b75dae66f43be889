/**
 * Safe SQL text for ClickHouse 18.16, which has no query parameters (`{name:Type}` and
 * `param_name=` arrived in 19.x). Every value that reaches a query goes through one of the
 * renderers below; none is ever pasted into SQL as given:
 *
 * - strings: every byte that is not [A-Za-z0-9 _-./:] becomes `\xHH` inside single quotes. The
 *   literal that results contains no quote, no backslash that is not ours and no control byte, so
 *   whatever the input, it cannot end the literal (test/store/clickhouse.test.ts round-trips
 *   fast-check strings through the server byte for byte);
 * - numbers: only finite numbers (integers: safe integers) are accepted and printed by JS;
 * - identifiers (database, cluster, table): only /^[A-Za-z_][A-Za-z0-9_]*$/, backquoted.
 *
 * Inserts never build SQL from values: rows travel as JSONEachRow, parsed by the server as data.
 */

import { StoreError } from '../errors';

/** A fragment of SQL that is already safe (built only by the helpers in this file). */
export class Sql {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

const PLAIN_BYTE = /[A-Za-z0-9 _\-./:]/;

/** A ClickHouse string literal for any JS string (UTF-8 bytes, escaped as above). */
export function str(value: string): Sql {
  let out = "'";
  for (const byte of Buffer.from(value, 'utf8')) {
    const ch = String.fromCharCode(byte);
    out += byte < 0x80 && PLAIN_BYTE.test(ch) ? ch : `\\x${byte.toString(16).padStart(2, '0')}`;
  }
  return new Sql(`${out}'`);
}

/** An Int64 literal; throws on anything but a safe integer. */
export function int(value: number): Sql {
  if (!Number.isSafeInteger(value)) {
    throw new StoreError('ERGOMETER_STORE_QUERY_FAILED', `expected an integer, got ${String(value)}`);
  }
  return new Sql(String(value));
}

/** A Float64 literal; throws on NaN and ±∞. */
export function float(value: number): Sql {
  if (!Number.isFinite(value)) {
    throw new StoreError('ERGOMETER_STORE_QUERY_FAILED', `expected a finite number, got ${String(value)}`);
  }
  return new Sql(`toFloat64(${String(value)})`);
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A backquoted identifier; only plain names are accepted (database and cluster names come from config). */
export function ident(name: string): Sql {
  if (!IDENTIFIER.test(name)) {
    throw new StoreError(
      'ERGOMETER_STORE_BAD_CONFIG',
      `"${name}" is not a plain ClickHouse identifier: use letters, digits and _ (not starting with a digit)`,
    );
  }
  return new Sql(`\`${name}\``);
}

/** `(a, b, c)` of string literals, for IN; never empty (an empty list matches nothing: `('')` would be wrong). */
export function strList(values: readonly string[]): Sql {
  if (values.length === 0) throw new StoreError('ERGOMETER_STORE_QUERY_FAILED', 'empty IN list');
  return new Sql(`(${values.map((v) => str(v).text).join(', ')})`);
}

/** Joins fragments. */
export function join(parts: readonly Sql[], separator: string): Sql {
  return new Sql(parts.map((p) => p.text).join(separator));
}

/**
 * Tagged template: interpolations must be Sql fragments (from the helpers above). A plain string
 * or number is a type error, so a value cannot be pasted in unescaped by accident.
 */
export function sql(strings: TemplateStringsArray, ...values: Sql[]): Sql {
  let out = strings[0] ?? '';
  for (let i = 0; i < values.length; i++) out += (values[i] as Sql).text + (strings[i + 1] ?? '');
  return new Sql(out);
}
