/**
 * Turns the profile @datadog/pprof serializes into the one the contract (PROFILE-CONTRACT.md) asks for.
 * That library writes sample types `[sample/count, wall/nanoseconds, cpu/nanoseconds]`, folds
 * `(garbage collector)` into a synthetic `Node.js` root as `Garbage Collection`, adds the CPU of the
 * process's other threads as a `Non JS threads activity` sample, and names anonymous functions
 * `(anonymous:L#12:C#5)`. We keep `[samples/count, cpu/nanoseconds]`, the V8 names, and the main
 * thread only (its CPU is what request samples measure).
 */
import { type Function as PprofFunction, type Profile, type Sample, ValueType } from 'pprof-format';

/** Names @datadog/pprof gives to frames that are V8's own pseudo-frames, and back. */
const RENAMED: ReadonlyMap<string, string> = new Map([['Garbage Collection', '(garbage collector)']]);
const SYNTHETIC_ROOT = 'Node.js';
const OTHER_THREADS = 'Non JS threads activity';

/** Sums of a rewritten profile, for the agent's diagnostics and the tests. */
export interface ProfileTotals {
  samples: number;
  cpuNanos: number;
}

/**
 * Rewrites `profile` in place (see the file comment) and returns its totals. Samples whose count and
 * cost are both zero are dropped.
 */
export function rewriteForContract(profile: Profile): ProfileTotals {
  const strings = profile.stringTable;
  const typeNames = profile.sampleType.map((t) => strings.strings[Number(t.type)]);
  const countIndex = typeNames.indexOf('sample');
  const cpuIndex = typeNames.indexOf('cpu');
  if (countIndex === -1 || cpuIndex === -1) {
    throw new Error(`profile without sample and cpu columns (${typeNames.join(', ')}): collectCpuTime is off`);
  }

  const functionsById = new Map<string, PprofFunction>();
  for (const fn of profile.function) functionsById.set(String(fn.id), fn);
  const nameOfLocation = new Map<string, string>();
  for (const location of profile.location) {
    const fn = functionsById.get(String(location.line[0]?.functionId ?? 0));
    nameOfLocation.set(String(location.id), fn === undefined ? '' : (strings.strings[Number(fn.name)] ?? ''));
    const line = location.line[0]?.line;
    // V8 reports the line where the function starts: it is the function's start line too.
    if (fn !== undefined && line !== undefined && Number(fn.startLine) === 0) fn.startLine = line;
  }
  for (const fn of profile.function) {
    const name = strings.strings[Number(fn.name)] ?? '';
    const renamed = RENAMED.get(name) ?? (name.startsWith('(anonymous:') ? '(anonymous)' : undefined);
    if (renamed !== undefined) {
      fn.name = strings.dedup(renamed);
      fn.systemName = fn.name;
    }
  }

  const kept: Sample[] = [];
  let samples = 0;
  let cpuNanos = 0;
  for (const sample of profile.sample) {
    const stack = sample.locationId;
    // Stacks are leaf first: the synthetic root is the last frame.
    const rootName = stack.length > 0 ? nameOfLocation.get(String(stack[stack.length - 1])) : undefined;
    if (rootName === SYNTHETIC_ROOT) {
      if (stack.length >= 2 && nameOfLocation.get(String(stack[stack.length - 2])) === OTHER_THREADS) continue;
      sample.locationId = stack.slice(0, -1);
    }
    const count = Number(sample.value[countIndex] ?? 0);
    const cpu = Number(sample.value[cpuIndex] ?? 0);
    if (count === 0 && cpu === 0) continue;
    sample.value = [count, cpu];
    samples += count;
    cpuNanos += cpu;
    kept.push(sample);
  }
  profile.sample = kept;
  profile.sampleType = [
    new ValueType({ type: strings.dedup('samples'), unit: strings.dedup('count') }),
    new ValueType({ type: strings.dedup('cpu'), unit: strings.dedup('nanoseconds') }),
  ];
  profile.defaultSampleType = profile.sampleType[1]!.type;
  // The synthetic root's location stays in the table, unreferenced: harmless, and cheaper than renumbering.
  return { samples, cpuNanos };
}
