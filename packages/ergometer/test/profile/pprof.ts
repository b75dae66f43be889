/**
 * Builds real pprof files (pprof-format) in the shape the agent sends (PROFILE-CONTRACT):
 * sample_type [samples/count, cpu/nanoseconds | instructions/count], `endpoint` and `flag:<key>`
 * string labels, functions with name, file and start line. For tests until (and beside) the agent's
 * own profiler.
 */
import { gzipSync } from 'node:zlib';
import {
  Label,
  Line,
  Location,
  Function as PprofFunction,
  Profile,
  Sample,
  StringTable,
  ValueType,
} from 'pprof-format';
import type { Metric } from '../../src/store/types';

export interface Frame {
  name: string;
  file: string;
  line: number;
}

export interface FixtureSample {
  /** Root first. */
  stack: Frame[];
  endpoint?: string;
  flags?: Record<string, string>;
  cost: number;
  count?: number;
}

/** Encodes the samples as one pprof Profile; gzip-compressed unless `gzip: false`. */
export function buildPprof(metric: Metric, samples: FixtureSample[], options: { gzip?: boolean } = {}): Buffer {
  const strings = new StringTable();
  const functions: PprofFunction[] = [];
  const locations: Location[] = [];
  const functionIds = new Map<string, number>();
  const locationOf = (frame: Frame): number => {
    const key = `${frame.name}\u0000${frame.file}\u0000${frame.line}`;
    let id = functionIds.get(key);
    if (id === undefined) {
      id = functions.length + 1;
      functionIds.set(key, id);
      functions.push(
        new PprofFunction({
          id,
          name: strings.dedup(frame.name),
          systemName: strings.dedup(frame.name),
          filename: strings.dedup(frame.file),
          startLine: frame.line,
        }),
      );
      locations.push(new Location({ id, line: [new Line({ functionId: id, line: frame.line })] }));
    }
    return id;
  };
  const costType = metric === 'cpu_ns' ? ['cpu', 'nanoseconds'] : ['instructions', 'count'];
  const profile = new Profile({
    sampleType: [
      new ValueType({ type: strings.dedup('samples'), unit: strings.dedup('count') }),
      new ValueType({ type: strings.dedup(costType[0] as string), unit: strings.dedup(costType[1] as string) }),
    ],
    sample: samples.map((s) => {
      const labels: Label[] = [];
      if (s.endpoint !== undefined)
        labels.push(new Label({ key: strings.dedup('endpoint'), str: strings.dedup(s.endpoint) }));
      for (const [key, variant] of Object.entries(s.flags ?? {})) {
        labels.push(new Label({ key: strings.dedup(`flag:${key}`), str: strings.dedup(variant) }));
      }
      return new Sample({
        // pprof lists the leaf first.
        locationId: s.stack.map(locationOf).reverse(),
        value: [s.count ?? 1, Math.round(s.cost)],
        label: labels,
      });
    }),
    function: functions,
    location: locations,
    stringTable: strings,
    periodType: new ValueType({ type: strings.dedup('wall'), unit: strings.dedup('nanoseconds') }),
    period: 10_000_000,
  });
  const bytes = Buffer.from(profile.encode());
  return options.gzip === false ? bytes : gzipSync(bytes);
}
