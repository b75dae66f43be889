/**
 * Small helpers over node:util parseArgs: usage errors with code ERGOMETER_USAGE and numbers
 * checked where they are read.
 */
import { parseArgs } from 'node:util';
import { ErgometerError } from '../errors';

export type OptionSpec = Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }>;

/** A usage error: the CLI prints the message and the command's usage, and exits with 2. */
export function usageError(message: string): ErgometerError {
  return new ErgometerError('ERGOMETER_USAGE', 2, message);
}

/** Parses `argv` strictly (unknown flags and stray positionals are usage errors). */
export function parseOptions(argv: string[], spec: OptionSpec): Record<string, string | boolean | undefined> {
  try {
    const { values } = parseArgs({ args: argv, options: spec, strict: true, allowPositionals: false });
    return values as Record<string, string | boolean | undefined>;
  } catch (error) {
    throw usageError((error as Error).message);
  }
}

/** An optional integer flag within [min, max]. */
export function integerOption(
  values: Record<string, string | boolean | undefined>,
  name: string,
  min: number,
  max: number,
): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (typeof raw !== 'string' || !/^\d+$/.test(raw) || value < min || value > max) {
    throw usageError(`--${name}: expected an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

/** A number from 0 to 1 (a fraction), or undefined when the option was not given. */
export function fractionOption(values: Record<string, string | boolean | undefined>, name: string): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (typeof raw !== 'string' || raw.trim() === '' || !Number.isFinite(value) || value < 0 || value > 1) {
    throw usageError(`--${name}: expected a number from 0 to 1, got ${JSON.stringify(raw)}`);
  }
  return value;
}

export function stringOption(values: Record<string, string | boolean | undefined>, name: string): string | undefined {
  const raw = values[name];
  return typeof raw === 'string' ? raw : undefined;
}
