/**
 * Cardinality guard: a service may have at most N distinct endpoints and M distinct flag keys
 * (defaults 2000 / 500). A client that puts raw URLs or user ids into endpoint names or flag keys
 * would otherwise multiply every aggregate row; samples that would add one more name past the
 * limit are refused and counted, the rest of the batch is stored.
 *
 * The sets live in this process and are seeded from the store the first time a service is seen
 * after start, so a restart does not reopen the door. Collectors side by side each keep their own
 * sets: the limit holds per collector, which bounds the total to N × collectors in the worst case.
 */
import type { IngestBatch } from '../store/types';

/** The names a service already has in the store (for seeding after a restart). */
export interface KnownNames {
  endpoints: Iterable<string>;
  flagKeys: Iterable<string>;
}

export interface GuardResult {
  /** Samples refused because they carried a new endpoint past the limit. */
  refusedEndpoint: number;
  /** Samples refused because they carried a new flag key past the limit. */
  refusedFlag: number;
  /** `counts` rows dropped because their endpoint is past the limit. */
  refusedCounts: number;
}

interface ServiceNames {
  endpoints: Set<string>;
  flagKeys: Set<string>;
}

export class CardinalityGuard {
  private readonly services = new Map<string, ServiceNames>();

  constructor(
    private readonly maxEndpoints: number,
    private readonly maxFlagKeys: number,
  ) {}

  /** Whether `service` has been seeded (or seen) in this process. */
  has(service: string): boolean {
    return this.services.has(service);
  }

  /** Starts a service with the names it already has (no-op when it is already known here). */
  seed(service: string, known: KnownNames): void {
    if (this.services.has(service)) return;
    this.services.set(service, { endpoints: new Set(known.endpoints), flagKeys: new Set(known.flagKeys) });
  }

  /**
   * Removes, in place, the samples and counts rows of `batch` that would push its service past a
   * limit, and records the new names of the rest. A sample with several new names is refused
   * for the first one found (endpoint before flags) and counted once.
   */
  apply(batch: IngestBatch): GuardResult {
    let names = this.services.get(batch.service);
    if (names === undefined) {
      names = { endpoints: new Set(), flagKeys: new Set() };
      this.services.set(batch.service, names);
    }
    const { endpoints, flagKeys } = names;
    const result: GuardResult = { refusedEndpoint: 0, refusedFlag: 0, refusedCounts: 0 };
    let kept = 0;
    const samples = batch.samples;
    for (let i = 0; i < samples.length; i++) {
      const sample = samples[i] as IngestBatch['samples'][number];
      if (!endpoints.has(sample.endpoint) && endpoints.size >= this.maxEndpoints) {
        result.refusedEndpoint++;
        continue;
      }
      let newKeys = 0;
      let flagRefused = false;
      for (const key in sample.flags) {
        if (!flagKeys.has(key)) {
          newKeys++;
          if (flagKeys.size + newKeys > this.maxFlagKeys) {
            flagRefused = true;
            break;
          }
        }
      }
      if (flagRefused) {
        result.refusedFlag++;
        continue;
      }
      endpoints.add(sample.endpoint);
      if (newKeys > 0) for (const key in sample.flags) flagKeys.add(key);
      samples[kept++] = sample;
    }
    samples.length = kept;

    let keptCounts = 0;
    const counts = batch.counts;
    for (let i = 0; i < counts.length; i++) {
      const row = counts[i] as IngestBatch['counts'][number];
      if (!endpoints.has(row.endpoint)) {
        if (endpoints.size >= this.maxEndpoints) {
          result.refusedCounts++;
          continue;
        }
        endpoints.add(row.endpoint);
      }
      counts[keptCounts++] = row;
    }
    counts.length = keptCounts;
    return result;
  }
}
