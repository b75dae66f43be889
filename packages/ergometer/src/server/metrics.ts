/**
 * The collector's own counters, served as Prometheus text (exposition format 0.0.4) on
 * `GET /metrics`. Plain fields and one fixed-bucket histogram: a scrape renders a few dozen
 * lines, and the hot path only adds to numbers.
 */

/** Why a request to an ingest route was refused (label `reason`). */
export type RejectReason =
  | 'bad_batch'
  | 'unsupported_version'
  | 'too_large'
  | 'unsupported_encoding'
  | 'unauthorized'
  | 'queue_full'
  | 'busy'
  | 'store_error'
  | 'shutting_down';

/** Upper bounds of the insert-latency buckets, seconds. */
const INSERT_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class CollectorMetrics {
  samplesAccepted = 0;
  batchesAccepted = 0;
  batchesDuplicate = 0;
  deploysAccepted = 0;
  profilesAccepted = 0;
  readonly rejected = new Map<RejectReason, number>();
  /** Samples refused by the cardinality guard, by limit. */
  cardinalityRefusedEndpoint = 0;
  cardinalityRefusedFlag = 0;
  cardinalityRefusedCounts = 0;
  private readonly insertBuckets = new Array<number>(INSERT_BUCKETS_S.length).fill(0);
  private insertCount = 0;
  private insertSumS = 0;
  writes = 0;

  /** Request bodies being read now. */
  uploadsInProgress = 0;

  constructor(
    private readonly queueDepth: () => { batches: number; samples: number },
    private readonly profilingCounts: () => { processes: number; profiling: number } = () => ({
      processes: 0,
      profiling: 0,
    }),
  ) {}

  reject(reason: RejectReason): void {
    this.rejected.set(reason, (this.rejected.get(reason) ?? 0) + 1);
  }

  /** Records one store write (one ingestMany call) that took `seconds`. */
  observeInsert(seconds: number): void {
    this.writes++;
    this.insertCount++;
    this.insertSumS += seconds;
    for (let i = 0; i < INSERT_BUCKETS_S.length; i++) {
      if (seconds <= (INSERT_BUCKETS_S[i] as number)) {
        this.insertBuckets[i] = (this.insertBuckets[i] as number) + 1;
        break;
      }
    }
  }

  /** Prometheus text exposition. */
  render(): string {
    const lines: string[] = [];
    const counter = (name: string, help: string, samples: Array<[string, number]>): void => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`);
      for (const [labels, value] of samples) lines.push(`${name}${labels} ${value}`);
    };
    const gauge = (name: string, help: string, value: number): void => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name} ${value}`);
    };
    counter('ergometer_samples_accepted_total', 'Samples stored (durable) from accepted batches.', [
      ['', this.samplesAccepted],
    ]);
    counter('ergometer_batches_accepted_total', 'Batches stored (durable), duplicates excluded.', [
      ['', this.batchesAccepted],
    ]);
    counter(
      'ergometer_batches_duplicate_total',
      'Batches acknowledged again because their batchId was stored before.',
      [['', this.batchesDuplicate]],
    );
    const reasons: RejectReason[] = [
      'bad_batch',
      'unsupported_version',
      'too_large',
      'unsupported_encoding',
      'unauthorized',
      'queue_full',
      'busy',
      'store_error',
      'shutting_down',
    ];
    counter(
      'ergometer_requests_rejected_total',
      'Ingest requests refused, by reason.',
      reasons.map((reason) => [`{reason="${reason}"}`, this.rejected.get(reason) ?? 0]),
    );
    counter('ergometer_cardinality_refused_total', 'Rows refused by the per-service cardinality guard, by limit.', [
      ['{limit="endpoints",row="sample"}', this.cardinalityRefusedEndpoint],
      ['{limit="flag_keys",row="sample"}', this.cardinalityRefusedFlag],
      ['{limit="endpoints",row="count"}', this.cardinalityRefusedCounts],
    ]);
    counter('ergometer_deploys_accepted_total', 'Deploys recorded.', [['', this.deploysAccepted]]);
    counter('ergometer_profiles_accepted_total', 'Profiles stored.', [['', this.profilesAccepted]]);
    const depth = this.queueDepth();
    gauge('ergometer_write_queue_batches', 'Batches waiting for or in a store write.', depth.batches);
    gauge('ergometer_write_queue_samples', 'Samples waiting for or in a store write.', depth.samples);
    gauge(
      'ergometer_uploads_in_progress',
      'Request bodies (samples, profiles) being received.',
      this.uploadsInProgress,
    );
    const profiling = this.profilingCounts();
    gauge(
      'ergometer_profiling_processes',
      'Live agent processes that asked whether to profile (POST /v1/profiling) and still check in.',
      profiling.processes,
    );
    gauge('ergometer_profiling_processes_profiling', 'Those of them that profile.', profiling.profiling);
    lines.push(
      '# HELP ergometer_insert_duration_seconds Time of one store write (one group commit of one or more batches).',
      '# TYPE ergometer_insert_duration_seconds histogram',
    );
    let cumulative = 0;
    for (let i = 0; i < INSERT_BUCKETS_S.length; i++) {
      cumulative += this.insertBuckets[i] as number;
      lines.push(`ergometer_insert_duration_seconds_bucket{le="${INSERT_BUCKETS_S[i]}"} ${cumulative}`);
    }
    lines.push(
      `ergometer_insert_duration_seconds_bucket{le="+Inf"} ${this.insertCount}`,
      `ergometer_insert_duration_seconds_sum ${this.insertSumS}`,
      `ergometer_insert_duration_seconds_count ${this.insertCount}`,
    );
    return `${lines.join('\n')}\n`;
  }
}
