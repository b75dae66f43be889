/**
 * Decoding of the agent's pprof profiles (docs/profiles contract: PROFILE-CONTRACT) into what the
 * server keeps besides the raw bytes: per (endpoint, flag variant) the cost of all samples, and per
 * function its self cost (stacks ending in it) and total cost (stacks containing it, counted once
 * per stack however often recursion repeats it).
 *
 * Everything here is untrusted input: every index is checked, every bound is enforced, and a
 * profile that breaks one is refused with a 400 naming what is wrong, never stored half-read.
 */
import { gunzipSync } from 'node:zlib';
import { Profile } from 'pprof-format';
import { badRequest, ErgometerError } from '../errors';
import type { FunctionId, Metric, ProfileEndpointSum, ProfileFunctionSum, ProfileSummary } from '../store/types';

/** Bounds on one decoded profile. Defaults fit minutes of a busy process with room to spare. */
export interface ProfileLimits {
  /** Bytes after gunzip. Default 64 MiB. */
  maxInflatedBytes: number;
  /** Samples in one profile. Default 1 000 000. */
  maxSamples: number;
  /** Frames of one stack (after expanding inlined lines). Default 1024. */
  maxStackDepth: number;
  /** Distinct functions (name, file, line). Default 100 000. */
  maxFunctions: number;
  /** Length of a function name, file name, endpoint, flag key or variant (UTF-16 units). Default 1024. */
  maxStringLength: number;
  /** Labels on one sample. Default 128. */
  maxLabelsPerSample: number;
}

export const DEFAULT_PROFILE_LIMITS: Readonly<ProfileLimits> = Object.freeze({
  maxInflatedBytes: 64 * 1024 * 1024,
  maxSamples: 1_000_000,
  maxStackDepth: 1024,
  maxFunctions: 100_000,
  maxStringLength: 1024,
  maxLabelsPerSample: 128,
});

/** The endpoint label value for stacks that ran outside any request. */
export const NO_REQUEST = '(no request)';

/** One stack sample after decoding: frames root first, as indices into {@link DecodedProfile.functions}. */
export interface DecodedSample {
  endpoint: string;
  flags: Record<string, string>;
  /** Number of stack samples this entry stands for (the `samples` column). */
  count: number;
  /** Cost in the metric's units (the cost column). */
  cost: number;
  /** Root first, leaf last. */
  frames: number[];
}

export interface DecodedProfile {
  functions: FunctionId[];
  samples: DecodedSample[];
}

const COST_TYPE: Record<Metric, string> = { cpu_ns: 'cpu', instructions: 'instructions' };

function badProfile(message: string): ErgometerError {
  return badRequest('ERGOMETER_BAD_PROFILE', `${message}; send a pprof Profile (gzip or not) as the agent writes it`);
}

function toNumber(value: number | bigint): number {
  return typeof value === 'bigint' ? Number(value) : value;
}

/** Inflates `.pb.gz` (checked by its magic bytes) and leaves a plain protobuf as it is. */
export function inflateProfile(body: Buffer, limits: ProfileLimits = DEFAULT_PROFILE_LIMITS): Buffer {
  if (body.length >= 2 && body[0] === 0x1f && body[1] === 0x8b) {
    try {
      return gunzipSync(body, { maxOutputLength: limits.maxInflatedBytes });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || error instanceof RangeError) {
        throw new ErgometerError(
          'ERGOMETER_TOO_LARGE',
          413,
          `the profile is larger than ${limits.maxInflatedBytes} bytes after gunzip; send shorter profiles`,
        );
      }
      throw badProfile(`body: corrupt gzip (${(error as Error).message})`);
    }
  }
  return body;
}

/**
 * Decodes and checks one profile of the given metric. Throws ERGOMETER_BAD_PROFILE (400) naming
 * the first problem: not a protobuf, no cost column for the metric, an index that points nowhere,
 * a negative value, a stack deeper or a string longer than the limits.
 */
export function decodeProfile(
  body: Buffer,
  metric: Metric,
  limits: ProfileLimits = DEFAULT_PROFILE_LIMITS,
): DecodedProfile {
  const bytes = inflateProfile(body, limits);
  let profile: Profile;
  try {
    profile = Profile.decode(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (error) {
    throw badProfile(`body: not a pprof protobuf (${(error as Error).message})`);
  }
  const strings = profile.stringTable.strings;
  const str = (index: number | bigint, what: string): string => {
    const i = toNumber(index);
    const s = strings[i];
    if (s === undefined || !Number.isInteger(i))
      throw badProfile(`${what}: string index ${i} is outside the string table`);
    if (s.length > limits.maxStringLength) {
      throw badProfile(`${what}: ${s.length} characters, more than the limit of ${limits.maxStringLength}`);
    }
    return s;
  };

  const typeNames = profile.sampleType.map((t, i) => str(t.type, `sample_type[${i}].type`));
  const costIndex = typeNames.indexOf(COST_TYPE[metric]);
  if (costIndex < 0) {
    throw badProfile(
      `sample_type: no "${COST_TYPE[metric]}" column for metric ${metric} (found ${JSON.stringify(typeNames)})`,
    );
  }
  const countIndex = typeNames.indexOf('samples');
  if (profile.sample.length > limits.maxSamples) {
    throw badProfile(`sample: ${profile.sample.length} samples, more than the limit of ${limits.maxSamples}`);
  }

  const functionsById = new Map<number, number>();
  const functions: FunctionId[] = [];
  const functionIndexByKey = new Map<string, number>();
  if (profile.function.length > limits.maxFunctions) {
    throw badProfile(`function: ${profile.function.length} functions, more than the limit of ${limits.maxFunctions}`);
  }
  profile.function.forEach((f, i) => {
    const id: FunctionId = {
      function: str(f.name, `function[${i}].name`) || '(anonymous)',
      file: str(f.filename, `function[${i}].filename`),
      line: Math.max(0, toNumber(f.startLine)),
    };
    const key = `${id.function}\u0000${id.file}\u0000${id.line}`;
    let index = functionIndexByKey.get(key);
    if (index === undefined) {
      index = functions.length;
      functions.push(id);
      functionIndexByKey.set(key, index);
    }
    functionsById.set(toNumber(f.id), index);
  });

  // A location is a list of function indices, leaf-most first (pprof: the last line is the caller
  // into which the preceding ones were inlined).
  const locations = new Map<number, number[]>();
  profile.location.forEach((location, i) => {
    const frames = location.line.map((line, j) => {
      const index = functionsById.get(toNumber(line.functionId));
      if (index === undefined) {
        throw badProfile(`location[${i}].line[${j}]: function id ${toNumber(line.functionId)} is not in the profile`);
      }
      return index;
    });
    locations.set(toNumber(location.id), frames);
  });

  const samples: DecodedSample[] = profile.sample.map((sample, i) => {
    const cost = toNumber(sample.value[costIndex] ?? 0);
    const count = countIndex < 0 ? 1 : toNumber(sample.value[countIndex] ?? 0);
    if (!Number.isFinite(cost) || cost < 0 || !Number.isFinite(count) || count < 0) {
      throw badProfile(`sample[${i}].value: cost and count must be finite and ≥ 0 (got ${cost}, ${count})`);
    }
    if (sample.label.length > limits.maxLabelsPerSample) {
      throw badProfile(`sample[${i}].label: ${sample.label.length} labels, more than ${limits.maxLabelsPerSample}`);
    }
    let endpoint = NO_REQUEST;
    const flags: Record<string, string> = {};
    sample.label.forEach((label, j) => {
      const key = str(label.key, `sample[${i}].label[${j}].key`);
      if (key === 'endpoint') endpoint = str(label.str, `sample[${i}].label[${j}].str`);
      else if (key.startsWith('flag:') && key.length > 5)
        flags[key.slice(5)] = str(label.str, `sample[${i}].label[${j}].str`);
    });
    const frames: number[] = [];
    // pprof lists the leaf first; we keep root first.
    for (let l = sample.locationId.length - 1; l >= 0; l--) {
      const id = toNumber(sample.locationId[l] as number | bigint);
      const location = locations.get(id);
      if (location === undefined) throw badProfile(`sample[${i}].location_id: location ${id} is not in the profile`);
      for (let k = location.length - 1; k >= 0; k--) frames.push(location[k] as number);
      if (frames.length > limits.maxStackDepth) {
        throw badProfile(`sample[${i}]: stack deeper than the limit of ${limits.maxStackDepth} frames`);
      }
    }
    return { endpoint, flags, count, cost, frames };
  });
  return { functions, samples };
}

/**
 * A native frame: a function V8 reports without a script (`write`, `runMicrotasks`, `digest`: C++
 * bindings and builtins), as opposed to JavaScript (a file) and V8's own pseudo-frames
 * (`(garbage collector)`, `(idle)`, `(program)`).
 */
export function isNativeFrame(f: FunctionId): boolean {
  return f.file === '' && !f.function.startsWith('(');
}

/**
 * One of V8's pseudo-frames: `(garbage collector)`, `(program)`, `(idle)` — no script, a name in
 * parentheses. Not a function anyone wrote: the collector's time lands on whichever request runs when
 * a collection starts, not on the one whose allocations made it needed.
 */
export function isPseudoFrame(f: FunctionId): boolean {
  return f.file === '' && f.function.startsWith('(');
}

/**
 * The frame a sample's self cost is charged to: the leaf, or if the leaf is native, the nearest
 * caller with a script. Whether V8 shows a native frame at all depends on whether the profiler had
 * logged that binding when the sample was taken, which differs between processes: one process of a
 * commit showed `write` under the socket code and another charged the same work to the JavaScript
 * that called it, and the function detector then saw `write` appear from nothing on a release that
 * changed nothing (the demo's quiet rollout). Charged to its caller, native work is counted the same
 * way in every process, and named where a reader can act on it: the JavaScript that asked for it.
 * A stack of native frames only keeps its leaf.
 */
export function selfFrame(frames: readonly number[], functions: readonly FunctionId[]): number | undefined {
  for (let i = frames.length - 1; i >= 0; i--) {
    const f = frames[i] as number;
    if (!isNativeFrame(functions[f] as FunctionId)) return f;
  }
  return frames[frames.length - 1];
}

/**
 * Per (endpoint, flag key, flag variant) sums: cost and samples of all stacks, and per function
 * self (the leaf, or its nearest JavaScript caller when the leaf is native: {@link selfFrame}) and
 * total (anywhere in the stack, once per stack). A sample with flags counts in the all-samples row
 * (flagKey '') and once in the row of each flag it carries, as request aggregates do.
 */
export function summarizeProfile(decoded: DecodedProfile): ProfileSummary {
  const endpoints = new Map<string, ProfileEndpointSum>();
  const functions = new Map<string, ProfileFunctionSum>();
  const seen = new Set<number>();
  for (const sample of decoded.samples) {
    const groups: Array<[string, string]> = [['', ''], ...Object.entries(sample.flags)];
    seen.clear();
    const leaf = selfFrame(sample.frames, decoded.functions);
    for (const f of sample.frames) seen.add(f);
    for (const [flagKey, flagVariant] of groups) {
      const groupKey = `${sample.endpoint}\u0000${flagKey}\u0000${flagVariant}`;
      let e = endpoints.get(groupKey);
      if (!e) {
        e = { endpoint: sample.endpoint, flagKey, flagVariant, samples: 0, cost: 0 };
        endpoints.set(groupKey, e);
      }
      e.samples += sample.count;
      e.cost += sample.cost;
      for (const f of seen) {
        const key = `${groupKey}\u0000${f}`;
        let row = functions.get(key);
        if (!row) {
          row = {
            ...(decoded.functions[f] as FunctionId),
            endpoint: sample.endpoint,
            flagKey,
            flagVariant,
            selfSamples: 0,
            selfCost: 0,
            totalSamples: 0,
            totalCost: 0,
          };
          functions.set(key, row);
        }
        row.totalSamples += sample.count;
        row.totalCost += sample.cost;
        if (f === leaf) {
          row.selfSamples += sample.count;
          row.selfCost += sample.cost;
        }
      }
    }
  }
  return { endpoints: [...endpoints.values()], functions: [...functions.values()] };
}
