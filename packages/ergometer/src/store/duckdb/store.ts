/**
 * The embedded store: one DuckDB file, one writer process.
 *
 * Write path (ingest): one transaction per call, in which the `batches` rows (whose primary key
 * refuses a batch id seen before), raw samples, counts and users are appended with DuckDB
 * appenders, then COMMIT: DuckDB has written the commit to its WAL when COMMIT returns, so a
 * resolved ingest survives a SIGKILL.
 *
 * Aggregates are derived data. Each committed batch is rolled up in JS (../rollup.ts) into an
 * in-memory accumulator that merges batches by key (service × commit × endpoint × metric × host class
 * × flag row × minute); the accumulator is written in one transaction together with the watermark
 * `aggregated_through_seq` (the highest batch_seq it covers) when it grows past
 * `aggregateFlushRows`, every `aggregateFlushMs`, before any read of aggregates, and on close().
 * After a crash, init() rebuilds the aggregates of the batches above the watermark from their raw
 * samples, which were committed with them. Writing aggregates per batch instead cost about as much
 * CPU as writing the samples themselves (measured: see docs/storage.md).
 *
 * Writes run one at a time through a queue on their own connection; reads use other connections
 * (`readConnections`, each one query at a time) and see the last committed state (DuckDB MVCC). compact() merges the partial aggregate rows of a
 * key into one row; queries always sum, so it only keeps the table small.
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import {
  BIGINT,
  blobValue,
  DOUBLE,
  type DuckDBAppender,
  type DuckDBConnection,
  DuckDBDataChunk,
  DuckDBInstance,
  type DuckDBResultReader,
  type DuckDBType,
  type DuckDBValue,
  INTEGER,
  LIST,
  listValue,
  VARCHAR,
} from '@duckdb/node-api';
import {
  decodeUsersSketch,
  encodeUsersSketch,
  mergeUsersSketches,
  type UsersSketch,
} from '@ergometer/agent/users-sketch';
import { StoreError } from '../errors';
import { mergeHistogram, quantile } from '../histogram';
import { hostBucketMs, hostMomentsRow } from '../host-rows';
import { profileEndpointRow, profileFunctionRow } from '../profile-rows';
import { type PartialAggregate, rollUpInto } from '../rollup';
import type {
  AggregateQuery,
  AggregateRow,
  CommitInfo,
  CountRow,
  Deploy,
  EndpointStats,
  HostMomentsQuery,
  HostMomentsRow,
  IngestBatch,
  IngestResult,
  Metric,
  ProfileEndpointRow,
  ProfileFunctionRow,
  ProfileMeta,
  ProfileQuery,
  ProfileSummary,
  Range,
  RetentionPolicy,
  RetentionResult,
  ServiceInfo,
  Store,
  StoredProfile,
  StoredSample,
  UsersRow,
} from '../types';
import { appendColumnar, type Column, columnsOf } from './columns';
import { migrate } from './migrations';

/** Where `ergometer serve` keeps its data when no --db is given. */
export const DEFAULT_DUCKDB_PATH = './ergometer.duckdb';

export interface DuckDbStoreOptions {
  /** Database file. Default `./ergometer.duckdb`; `':memory:'` for a store that is not kept. */
  path?: string;
  /** Merge partial aggregate rows once this many were appended since the last merge. Default 50 000. */
  compactAfterRows?: number;
  /** Write the in-memory aggregates once they hold this many rows. Default 20 000. */
  aggregateFlushRows?: number;
  /** Write the in-memory aggregates at least this often (ms). Default 5 000. */
  aggregateFlushMs?: number;
  /** Worker threads DuckDB may use for queries. Default: DuckDB's own choice (all cores). */
  threads?: number;
  /** DuckDB memory limit, e.g. '1GB'. Default: DuckDB's (80% of RAM). */
  memoryLimit?: string;
  /** Connections reads run on, one query at a time each. Default 2. */
  readConnections?: number;
  /**
   * Write-ahead log size at which DuckDB checkpoints (writes the logged rows into the file, compressed).
   * Default {@link DEFAULT_CHECKPOINT_THRESHOLD}; DuckDB's own default is '16MB'.
   */
  checkpointThreshold?: string;
}

/**
 * The store's checkpoint threshold. DuckDB's 16 MB made a checkpoint every ~130 000 ingested samples, each
 * rewriting the tables' partly filled row groups: ingest cost ~1.3 µs more CPU per sample than with 128 MB
 * (docs/storage.md). The price: up to 128 MB of log to replay after a crash (150 MB took 2 s here) and
 * as much data held uncompressed in memory until the checkpoint.
 */
export const DEFAULT_CHECKPOINT_THRESHOLD = '128MB';

type Params = Record<string, DuckDBValue>;
type ParamTypes = Record<string, DuckDBType>;

// Appender column types of the profile tables, in table order (see migrations.ts).
const PROFILE_HEAD_TYPES: DuckDBType[] = [VARCHAR, VARCHAR, VARCHAR, VARCHAR, BIGINT, BIGINT]; // profile_id … to_ms
const PROFILE_ENDPOINT_TYPES: DuckDBType[] = [...PROFILE_HEAD_TYPES, VARCHAR, VARCHAR, VARCHAR, DOUBLE, DOUBLE];
const PROFILE_FUNCTION_TYPES: DuckDBType[] = [
  ...PROFILE_HEAD_TYPES,
  ...[VARCHAR, VARCHAR, VARCHAR, VARCHAR, VARCHAR], // endpoint … file_name
  INTEGER, // line
  ...[DOUBLE, DOUBLE, DOUBLE, DOUBLE], // self_samples … total_cost
];
/** A group commit stops taking waiting calls once it holds this many samples. */
const GROUP_COMMIT_MAX_SAMPLES = 100_000;
/** DuckDB's vector size: a data chunk holds at most this many rows. */
const CHUNK_ROWS = 2048;
const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

/** A full aggregate row key plus its partial sums, as stored. */
interface StoredAggregate extends PartialAggregate {
  service: string;
  commit: string;
  metric: string;
  hostClass: string;
}

/** Runs async tasks one after another (DuckDB allows one open transaction per connection). */
class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.tail.then(task, task);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

/**
 * Aggregates of committed batches not yet written: one accumulator per (service, commit, metric,
 * host class) into which each batch's samples are rolled up directly (rollUpInto), keyed within it
 * by (minute, endpoint, flag row).
 */
class PendingAggregates {
  private readonly byGroup = new Map<string, Map<string, StoredAggregate>>();
  /** Rows held, over all groups. */
  rows = 0;

  add(service: string, commit: string, metric: string, hostClass: string, samples: IngestBatch['samples']): void {
    const key = JSON.stringify([service, commit, metric, hostClass]);
    let group = this.byGroup.get(key);
    if (group === undefined) {
      group = new Map();
      this.byGroup.set(key, group);
    }
    const create = (endpoint: string, flagKey: string, flagVariant: string, minute: number, ts: number) => ({
      service,
      commit,
      metric,
      hostClass,
      endpoint,
      flagKey,
      flagVariant,
      minute,
      n: 0,
      weight: 0,
      sumCost: 0,
      sumCost2: 0,
      sumLogCost: 0,
      sumLogCost2: 0,
      sumWall: 0,
      sumDb: 0,
      sumCache: 0,
      sumHttp: 0,
      minTs: ts,
      maxTs: ts,
      costHist: new Map<number, number>(),
      wallHist: new Map<number, number>(),
    });
    this.rows += rollUpInto(group, create, samples);
  }

  /** The rows, group by group. */
  *groups(): IterableIterator<Iterable<StoredAggregate>> {
    for (const group of this.byGroup.values()) yield group.values();
  }
}

/**
 * Two CTEs that merge the MAP(SMALLINT, INTEGER) histogram `column` of the rows of a CTE `f` per `by`
 * (a column list): `${name}_bins` unnests the bins and sums each one's counts as `countType`, and
 * `${name}` gathers them back into one value per group, `entries` wrapping the list of {key, value}.
 */
function histogramMergeCtes(o: {
  column: string;
  name: string;
  by: string;
  countType: 'DOUBLE' | 'INTEGER';
  entries: (list: string) => string;
}): string {
  return `${o.name}_bins AS (
         SELECT ${o.by}, bin, sum(count)::${o.countType} AS count
         FROM (SELECT ${o.by}, unnest(map_keys(${o.column})) AS bin, unnest(map_values(${o.column})) AS count FROM f)
         GROUP BY ALL),
       ${o.name} AS (
         SELECT ${o.by}, ${o.entries("list({'key': bin, 'value': count})")} AS ${o.column} FROM ${o.name}_bins GROUP BY ALL)`;
}

function mapToHist(value: unknown): Map<number, number> {
  const hist = new Map<number, number>();
  if (Array.isArray(value)) {
    for (const entry of value as Array<{ key: number; value: number }>)
      hist.set(Number(entry.key), Number(entry.value));
  }
  return hist;
}

/** Appends column arrays to a table in chunks of at most CHUNK_ROWS rows. */
function appendColumns(appender: DuckDBAppender, types: DuckDBType[], columns: DuckDBValue[][]): void {
  const rows = columns[0]?.length ?? 0;
  for (let start = 0; start < rows; start += CHUNK_ROWS) {
    const end = Math.min(rows, start + CHUNK_ROWS);
    const chunk = DuckDBDataChunk.create(types, end - start);
    chunk.setColumns(start === 0 && end === rows ? columns : columns.map((c) => c.slice(start, end)));
    appender.appendDataChunk(chunk);
  }
}

/** ` AND column = $name` with its VARCHAR parameter when `value` is given, else ''. */
function equalsSql(column: string, name: string, value: string | undefined, params: Params, types: ParamTypes): string {
  if (value === undefined) return '';
  params[name] = value;
  types[name] = VARCHAR;
  return ` AND ${column} = $${name}`;
}

function rangeSql(column: string, q: Range, params: Params, types: ParamTypes): string {
  let sql = '';
  if (q.from !== undefined) {
    sql += ` AND ${column} >= $from`;
    params.from = Math.floor(q.from);
    types.from = BIGINT;
  }
  if (q.to !== undefined) {
    sql += ` AND ${column} < $to`;
    params.to = Math.ceil(q.to);
    types.to = BIGINT;
  }
  return sql;
}

/**
 * The aggregate rows a query reads: whole hours of its range from `aggregates_hourly`, the minutes at
 * the range's edges from `aggregates` (both tables hold the same data at two resolutions). Buckets
 * that are not whole hours can only be read from minutes.
 */
function aggregateSource(filters: string, q: AggregateQuery, params: Params, types: ParamTypes): string {
  const bucketMs = q.bucketMs ?? 0;
  const minutesOnly = (): string => `SELECT * FROM aggregates WHERE ${filters}${rangeSql('minute', q, params, types)}`;
  if (bucketMs % HOUR_MS !== 0) return minutesOnly();
  const hourFrom = q.from === undefined ? undefined : Math.ceil(q.from / HOUR_MS) * HOUR_MS;
  const hourTo = q.to === undefined ? undefined : Math.floor(q.to / HOUR_MS) * HOUR_MS;
  if (hourFrom !== undefined && hourTo !== undefined && hourFrom >= hourTo) return minutesOnly();
  let hours = `SELECT * FROM aggregates_hourly WHERE ${filters}`;
  const edges: string[] = [];
  if (hourFrom !== undefined && q.from !== undefined) {
    hours += ' AND minute >= $hourFrom';
    params.hourFrom = hourFrom;
    types.hourFrom = BIGINT;
    if (q.from < hourFrom) {
      edges.push('(minute >= $from AND minute < $hourFrom)');
      params.from = Math.floor(q.from);
      types.from = BIGINT;
    }
  }
  if (hourTo !== undefined && q.to !== undefined) {
    hours += ' AND minute < $hourTo';
    params.hourTo = hourTo;
    types.hourTo = BIGINT;
    if (q.to > hourTo) {
      edges.push('(minute >= $hourTo AND minute < $to)');
      params.to = Math.ceil(q.to);
      types.to = BIGINT;
    }
  }
  if (edges.length === 0) return hours;
  return `${hours} UNION ALL SELECT * FROM aggregates WHERE ${filters} AND (${edges.join(' OR ')})`;
}

function isDuplicateKeyError(error: unknown): boolean {
  return error instanceof Error && /Duplicate key [\s\S]*violates primary key constraint/i.test(error.message);
}

function isLockError(error: unknown): boolean {
  return error instanceof Error && /Could not set lock on file|Conflicting lock/i.test(error.message);
}

/** The DuckDB implementation of {@link Store}. Create it with {@link openDuckDbStore}. */
export class DuckDbStore implements Store {
  readonly backend = 'duckdb' as const;
  /** The database file this store writes. */
  readonly path: string;
  private readonly options: DuckDbStoreOptions;
  private instance: DuckDBInstance | undefined;
  private writer: DuckDBConnection | undefined;
  /** Read connections, each running one query at a time; a read goes to the least busy one. */
  private readers: Array<{ connection: DuckDBConnection; queue: SerialQueue; pending: number }> = [];
  private readonly writes = new SerialQueue();
  private initialising: Promise<void> | undefined;
  private uncompactedRows = 0;
  private closed = false;
  private closing: Promise<void> | undefined;
  /** Next batch_seq to assign (the single writer owns the sequence). */
  private nextSeq = 1;
  /** Aggregates of committed batches not yet written, by full key. */
  private pending = new PendingAggregates();
  /** The highest batch_seq whose aggregates are in `pending` (or already written). */
  private pendingThroughSeq = 0;
  private flushTimer: NodeJS.Timeout | undefined;
  /** ingest calls waiting for the writer; committed together (see ingestMany). */
  private readonly ingestWaiting: Array<{
    batches: IngestBatch[];
    resolve: (results: IngestResult[]) => void;
    reject: (error: unknown) => void;
  }> = [];

  constructor(options: DuckDbStoreOptions = {}) {
    this.options = options;
    this.path = options.path ?? DEFAULT_DUCKDB_PATH;
  }

  /** Opens the file, takes its write lock and creates or migrates the schema. Idempotent. */
  init(): Promise<void> {
    if (this.closed) return Promise.reject(this.closedError());
    this.initialising ??= this.open().catch((error: unknown) => {
      this.initialising = undefined;
      throw error;
    });
    return this.initialising;
  }

  private async open(): Promise<void> {
    const config: Record<string, string> = {
      checkpoint_threshold: this.options.checkpointThreshold ?? DEFAULT_CHECKPOINT_THRESHOLD,
    };
    if (this.options.threads !== undefined) config.threads = String(this.options.threads);
    if (this.options.memoryLimit !== undefined) config.memory_limit = this.options.memoryLimit;
    let instance: DuckDBInstance;
    try {
      instance = await DuckDBInstance.create(this.path, config);
    } catch (error) {
      if (isLockError(error)) {
        const pid = /PID (\d+)/.exec((error as Error).message)?.[1];
        throw new StoreError(
          'ERGOMETER_DB_LOCKED',
          `another ergometer serve is using ${path.resolve(this.path)}${pid ? ` (process ${pid})` : ''}: ` +
            'stop it, or give this one another --db file. DuckDB allows one writing process per file; ' +
            'several collectors need ClickHouse (--clickhouse).',
          { cause: error },
        );
      }
      throw error;
    }
    try {
      const writer = await instance.connect();
      await migrate(writer, this.path);
      const readers: DuckDbStore['readers'] = [];
      for (let i = 0; i < Math.max(1, this.options.readConnections ?? 2); i++) {
        readers.push({ connection: await instance.connect(), queue: new SerialQueue(), pending: 0 });
      }
      const state = await writer.runAndReadAll(
        `SELECT (SELECT count(*) FROM aggregates WHERE NOT compacted)::DOUBLE AS uncompacted,
           (SELECT coalesce(max(batch_seq), 0) FROM batches)::DOUBLE AS max_seq`,
      );
      const row = state.getRowObjectsJS()[0] ?? {};
      this.uncompactedRows = Number(row.uncompacted ?? 0);
      this.nextSeq = Number(row.max_seq ?? 0) + 1;
      await this.recoverAggregates(writer);
      await buildUsersMerged(writer);
      this.instance = instance;
      this.writer = writer;
      this.readers = readers;
      this.flushTimer = setInterval(() => {
        // A failed flush keeps its rows in memory and is retried on the next tick or read.
        this.flushAggregates().catch(() => undefined);
      }, this.options.aggregateFlushMs ?? 5_000);
      this.flushTimer.unref();
    } catch (error) {
      instance.closeSync();
      throw error;
    }
  }

  private closedError(): StoreError {
    return new StoreError(
      'ERGOMETER_STORE_CLOSED',
      this.closed
        ? `the store on ${this.path} is closed: open a new one`
        : `call init() before using the store on ${this.path}`,
    );
  }

  private async connections(): Promise<{ writer: DuckDBConnection; readers: DuckDbStore['readers'] }> {
    if (this.closed) throw this.closedError();
    if (this.initialising) await this.initialising;
    if (!this.writer || this.readers.length === 0) throw this.closedError();
    return { writer: this.writer, readers: this.readers };
  }

  private async write<T>(task: (connection: DuckDBConnection) => Promise<T>): Promise<T> {
    const { writer } = await this.connections();
    return this.writes.run(() => task(writer));
  }

  /** Runs `task` in one transaction on the write connection; rolls back if it throws. */
  private transaction<T>(task: (connection: DuckDBConnection) => Promise<T>): Promise<T> {
    return this.write(async (connection) => {
      await connection.run('BEGIN TRANSACTION');
      try {
        const result = await task(connection);
        await connection.run('COMMIT');
        return result;
      } catch (error) {
        await connection.run('ROLLBACK').catch(() => undefined);
        throw error;
      }
    });
  }

  private async query(sql: string, params: Params = {}, types: ParamTypes = {}): Promise<Record<string, unknown>[]> {
    const { readers } = await this.connections();
    // The least busy connection: a page's parallel requests run side by side instead of queueing
    // behind its slowest one (DuckDB runs queries of several connections of one file concurrently).
    const reader = readers.reduce((best, r) => (r.pending < best.pending ? r : best));
    reader.pending++;
    try {
      return await reader.queue.run(async () => {
        const result = await reader.connection.runAndReadAll(sql, params, types);
        return result.getRowObjectsJS() as Record<string, unknown>[];
      });
    } finally {
      reader.pending--;
    }
  }

  ingest(batch: IngestBatch): Promise<IngestResult> {
    return this.ingestMany([batch]).then((results) => results[0] as IngestResult);
  }

  /**
   * Stores batches once each. Calls that arrive while the writer is busy are committed together in the
   * next transaction (group commit: a commit costs a WAL sync and a few statements whatever its size);
   * each call still resolves only once its own batches are committed, with its own results.
   */
  ingestMany(batches: IngestBatch[]): Promise<IngestResult[]> {
    if (batches.length === 0) return Promise.resolve([]);
    return new Promise<IngestResult[]>((resolve, reject) => {
      this.ingestWaiting.push({ batches, resolve, reject });
      // The first caller to find nobody waiting schedules a drain; later ones ride along with it.
      if (this.ingestWaiting.length === 1) void this.drainIngests();
    });
  }

  private async drainIngests(): Promise<void> {
    let writer: DuckDBConnection;
    try {
      ({ writer } = await this.connections());
    } catch (error) {
      for (const call of this.ingestWaiting.splice(0)) call.reject(error);
      return;
    }
    await this.writes.run(async () => {
      // Everything that arrived until the writer was free, up to a bound on one transaction's size.
      let samples = 0;
      let take = 0;
      while (take < this.ingestWaiting.length && (take === 0 || samples < GROUP_COMMIT_MAX_SAMPLES)) {
        for (const b of this.ingestWaiting[take]?.batches ?? []) samples += b.samples.length;
        take++;
      }
      const group = this.ingestWaiting.splice(0, take);
      if (this.ingestWaiting.length > 0) void this.drainIngests();
      if (group.length === 0) return;
      try {
        const results = await this.ingestInTransaction(
          writer,
          group.flatMap((call) => call.batches),
        );
        let offset = 0;
        for (const call of group) {
          call.resolve(results.slice(offset, offset + call.batches.length));
          offset += call.batches.length;
        }
      } catch (error) {
        if (group.length === 1) {
          group[0]?.reject(error);
          return;
        }
        // One call's bad batch must not fail the others: each call alone, in its own transaction.
        for (const call of group) {
          await this.ingestInTransaction(writer, call.batches).then(call.resolve, call.reject);
        }
      }
    });
    if (this.pending.rows >= (this.options.aggregateFlushRows ?? 20_000)) {
      // Errors are not the callers' (their batches are committed): the rows stay and are retried.
      await this.flushAggregates().catch(() => undefined);
    }
  }

  /** Stores the batches not seen before in one transaction; runs on the writer, inside the queue. */
  private async ingestInTransaction(connection: DuckDBConnection, batches: IngestBatch[]): Promise<IngestResult[]> {
    // Fast path: no lookup. The batches row is appended first and its primary key refuses a batch id
    // stored before; only then (a retry: rare) are the ids looked up and the transaction redone.
    let outcome: { fresh: Array<{ batch: IngestBatch; seq: number }>; out: IngestResult[] };
    try {
      outcome = await this.appendInTransaction(connection, batches, new Set());
    } catch (error) {
      if (!isDuplicateKeyError(error)) throw error;
      const seen = await connection.runAndReadAll(
        'SELECT batch_id FROM batches WHERE batch_id IN (SELECT unnest($ids))',
        { ids: listValue([...new Set(batches.map((b) => b.batchId))]) },
        { ids: LIST(VARCHAR) },
      );
      const known = new Set(seen.getRowObjectsJS().map((row) => String(row.batch_id)));
      outcome = await this.appendInTransaction(connection, batches, known);
    }
    // Committed: the batches' aggregates join the accumulator (rebuilt from samples after a crash).
    for (const { batch, seq } of outcome.fresh) {
      this.pending.add(batch.service, batch.commit, batch.metric, batch.hostClass, batch.samples);
      this.pendingThroughSeq = seq;
    }
    return outcome.out;
  }

  /** One transaction: appends the batches whose ids are not in `known` (nor repeated in the call). */
  private async appendInTransaction(
    connection: DuckDBConnection,
    batches: IngestBatch[],
    known: Set<string>,
  ): Promise<{ fresh: Array<{ batch: IngestBatch; seq: number }>; out: IngestResult[] }> {
    const fresh: Array<{ batch: IngestBatch; seq: number }> = [];
    let seq = this.nextSeq;
    const out = batches.map((batch) => {
      if (known.has(batch.batchId)) return { stored: false, samples: batch.samples.length };
      known.add(batch.batchId);
      fresh.push({ batch, seq: seq++ });
      return { stored: true, samples: batch.samples.length };
    });
    if (fresh.length === 0) return { fresh, out };
    await connection.run('BEGIN TRANSACTION');
    try {
      await this.appendBatches(connection, fresh);
      await connection.run('COMMIT');
    } catch (error) {
      await connection.run('ROLLBACK').catch(() => undefined);
      throw error;
    }
    this.nextSeq = seq;
    return { fresh, out };
  }

  /**
   * Writes the in-memory aggregates and moves the watermark, in one transaction. Called when the
   * accumulator is full, on a timer, before reads of aggregates and on close(); safe to call any time.
   */
  async flushAggregates(): Promise<void> {
    if (this.pending.rows === 0) return;
    await this.write(async (connection) => {
      if (this.pending.rows === 0) return;
      const rows = this.pending;
      const throughSeq = this.pendingThroughSeq;
      await connection.run('BEGIN TRANSACTION');
      try {
        await this.writeAggregateRows(connection, rows);
        await connection.run(
          "UPDATE store_state SET value = $seq WHERE name = 'aggregated_through_seq'",
          { seq: throughSeq },
          { seq: BIGINT },
        );
        await connection.run('COMMIT');
      } catch (error) {
        await connection.run('ROLLBACK').catch(() => undefined);
        throw error;
      }
      this.pending = new PendingAggregates();
      this.uncompactedRows += rows.rows;
    });
    if (this.uncompactedRows >= (this.options.compactAfterRows ?? 50_000)) await this.compact();
  }

  /** Appends accumulated rows to the minute table and, merged per hour, to the hourly table. */
  private async writeAggregateRows(connection: DuckDBConnection, pending: PendingAggregates): Promise<void> {
    const minuteColumns = aggregateColumns();
    const hourColumns = aggregateColumns();
    for (const group of pending.groups()) {
      // Within a group (one service, commit, metric and host class) a row is keyed by its minute,
      // endpoint and flag row; its hour's row by the same with the hour.
      const hourly = new Map<string, StoredAggregate>();
      for (const row of group) {
        minuteColumns.push(row, false);
        const hour = Math.floor(row.minute / HOUR_MS) * HOUR_MS;
        const key = `${hour}:${row.endpoint.length}:${row.endpoint}${row.flagKey.length}:${row.flagKey}${row.flagVariant}`;
        const acc = hourly.get(key);
        if (acc === undefined) {
          hourly.set(key, { ...row, minute: hour, costHist: new Map(row.costHist), wallHist: new Map(row.wallHist) });
        } else mergePartial(acc, row);
      }
      for (const row of hourly.values()) hourColumns.push(row, false);
    }
    await appendColumnarTo(connection, 'aggregates', minuteColumns.columns);
    await appendColumnarTo(connection, 'aggregates_hourly', hourColumns.columns);
  }

  /**
   * After a crash, rebuilds the aggregates of the batches committed above the watermark from their
   * raw samples (same roll-up code as ingest), and writes them with the new watermark.
   */
  private async recoverAggregates(connection: DuckDBConnection): Promise<void> {
    const watermark = Number(
      (
        await connection.runAndReadAll(
          "SELECT value::DOUBLE AS v FROM store_state WHERE name = 'aggregated_through_seq'",
        )
      ).getRowObjectsJS()[0]?.v ?? 0,
    );
    const through = this.nextSeq - 1;
    if (through <= watermark) return;
    const reader = await connection.runAndReadAll(
      `SELECT b.batch_seq::DOUBLE AS batch_seq, b.service, b.commit_id, b.metric, b.host_class, s.ts::DOUBLE AS ts,
         s.endpoint, s.status, s.cost, s.wall_ms, s.db_ms, s.cache_ms, s.http_ms, s.flags, s.user_id, s.weight, s.aborted
       FROM samples s JOIN batches b USING (batch_seq) WHERE b.batch_seq > $watermark ORDER BY b.batch_seq`,
      { watermark },
      { watermark: BIGINT },
    );
    const byBatch = new Map<number, { head: Record<string, unknown>; samples: IngestBatch['samples'] }>();
    for (const r of reader.getRowObjectsJS()) {
      const seq = Number(r.batch_seq);
      let entry = byBatch.get(seq);
      if (entry === undefined) {
        entry = { head: r, samples: [] };
        byBatch.set(seq, entry);
      }
      entry.samples.push(sampleFromRow(r));
    }
    for (const { head, samples } of byBatch.values()) {
      this.pending.add(
        String(head.service),
        String(head.commit_id),
        String(head.metric),
        String(head.host_class),
        samples,
      );
    }
    this.pendingThroughSeq = through;
    // Written with the writer connection directly: the store is not open for callers yet.
    await connection.run('BEGIN TRANSACTION');
    try {
      await this.writeAggregateRows(connection, this.pending);
      await connection.run(
        "UPDATE store_state SET value = $seq WHERE name = 'aggregated_through_seq'",
        { seq: through },
        { seq: BIGINT },
      );
      await connection.run('COMMIT');
    } catch (error) {
      await connection.run('ROLLBACK').catch(() => undefined);
      this.pending = new PendingAggregates();
      throw error;
    }
    this.uncompactedRows += this.pending.rows;
    this.pending = new PendingAggregates();
  }

  /** Appends the rows of new batches inside the caller's transaction. */
  private async appendBatches(
    connection: DuckDBConnection,
    batches: Array<{ batch: IngestBatch; seq: number }>,
  ): Promise<void> {
    const counts = countColumns();
    const users = userColumns();
    const rows = batchColumns();
    for (const { batch: b, seq } of batches) {
      for (const c of b.counts) counts.push(b, c);
      for (const u of b.users) users.push(b, u);
      rows.push(b, seq);
    }
    // batches first: its primary key is what refuses a repeated batch id (see ingestMany).
    await appendColumnarTo(connection, 'batches', rows.columns);
    await appendColumnarTo(connection, 'samples', sampleColumns(batches));
    await appendColumnarTo(connection, 'counts', counts.columns);
    await appendColumnarTo(connection, 'users', users.columns);
    const sketches: Array<{ service: string; minute: number; sketch: string }> = [];
    for (const { batch: b } of batches) {
      for (const u of b.users) sketches.push({ service: b.service, minute: Math.round(u.minute), sketch: u.sketch });
    }
    await mergeUsersMinutes(connection, sketches);
  }

  private async appendTo(
    connection: DuckDBConnection,
    table: string,
    types: DuckDBType[],
    columns: DuckDBValue[][],
  ): Promise<void> {
    if ((columns[0]?.length ?? 0) === 0) return;
    await appendGuarded(connection, table, (appender) => appendColumns(appender, types, columns));
  }

  /**
   * Checkpoints: everything committed moves from the write-ahead log into the database file, and the
   * log is emptied. DuckDB does this on its own once the log reaches the checkpoint threshold, and on
   * close(). Aggregates not yet flushed are not written (init() rebuilds them from the samples).
   */
  async checkpoint(): Promise<void> {
    await this.write((connection) => connection.run('CHECKPOINT'));
  }

  /**
   * Merges the partial aggregate rows of every key that has rows appended since the last merge into
   * one row per key, in one transaction. Ingest calls it every `compactAfterRows` rows; it is also
   * safe to call at any time (queries give the same answers before and after). Returns how many rows
   * were merged (both tables; a key's only row is not counted) and how many rows they became.
   */
  async compact(): Promise<{ rowsBefore: number; rowsAfter: number }> {
    const result = await this.transaction(async (connection) => {
      const minute = await this.compactTable(connection, 'aggregates');
      const hour = await this.compactTable(connection, 'aggregates_hourly');
      await compactUsersMerged(connection);
      return { rowsBefore: minute.rowsBefore + hour.rowsBefore, rowsAfter: minute.rowsAfter + hour.rowsAfter };
    });
    this.uncompactedRows = 0;
    return result;
  }

  private async compactTable(
    connection: DuckDBConnection,
    table: 'aggregates' | 'aggregates_hourly',
  ): Promise<{ rowsBefore: number; rowsAfter: number }> {
    // All in SQL, and only keys that have something to merge. Reading every touched key's rows out
    // into JS, merging there and appending them back cost ~100 µs of CPU per row (MAP values become JS
    // objects and back): 3.5 s for the 33 000 rows of 600 000 ingested samples, of which 6 % merged.
    const keys = 'service, commit_id, endpoint, metric, host_class, flag_key, flag_variant, minute';
    // Keys with a row appended since the last compaction and more than one row in all, numbered: the
    // merge groups by that number, not by eight columns per histogram bin. The scan for their older
    // rows starts at the earliest touched minute (DuckDB's zone maps skip the rest).
    await connection.run(`CREATE OR REPLACE TEMP TABLE compact_keys AS
        WITH touched AS (SELECT DISTINCT ${keys} FROM ${table} WHERE NOT compacted)
        SELECT row_number() OVER () AS id, ${keys}, count(*) AS rows
        FROM ${table} a SEMI JOIN touched USING (${keys})
        WHERE a.minute >= (SELECT min(minute) FROM touched)
        GROUP BY ALL HAVING count(*) > 1`);
    // Histograms merge by summing each bin's counts. Bins are not kept sorted within a map (readers
    // sort; ordering per group made this step 4 times slower).
    const mergedBins = (column: string): string =>
      histogramMergeCtes({
        column,
        name: `${column}_merged`,
        by: 'id',
        countType: 'INTEGER',
        entries: (list) => `map_from_entries(${list})`,
      });
    const emptyHist = 'MAP([]::SMALLINT[], []::INTEGER[])';
    await connection.run(`CREATE OR REPLACE TEMP TABLE compact_rows AS
        WITH f AS (SELECT k.id, a.* EXCLUDE (${keys}) FROM ${table} a JOIN compact_keys k USING (${keys})),
        sums AS (
          SELECT id, sum(n)::BIGINT AS n, sum(weight) AS weight, sum(sum_cost) AS sum_cost,
            sum(sum_cost2) AS sum_cost2, sum(sum_log_cost) AS sum_log_cost, sum(sum_log_cost2) AS sum_log_cost2,
            sum(sum_wall) AS sum_wall, sum(sum_db) AS sum_db, sum(sum_cache) AS sum_cache, sum(sum_http) AS sum_http,
            min(min_ts) AS min_ts, max(max_ts) AS max_ts
          FROM f GROUP BY id),
        ${mergedBins('cost_hist')},
        ${mergedBins('wall_hist')}
        SELECT k.* EXCLUDE (id, rows), sums.* EXCLUDE (id),
          coalesce(c.cost_hist, ${emptyHist}) AS cost_hist, coalesce(w.wall_hist, ${emptyHist}) AS wall_hist,
          true AS compacted
        FROM compact_keys k JOIN sums USING (id) LEFT JOIN cost_hist_merged c USING (id)
          LEFT JOIN wall_hist_merged w USING (id)`);
    const count = await connection.runAndReadAll(
      'SELECT coalesce(sum(rows), 0)::DOUBLE AS before, count(*)::DOUBLE AS after FROM compact_keys',
    );
    const { before, after } = count.getRowObjectsJS()[0] as { before: number; after: number };
    if (after > 0) {
      const sameKey = keys
        .split(', ')
        .map((column) => `k.${column} = a.${column}`)
        .join(' AND ');
      await connection.run(`DELETE FROM ${table} a USING compact_keys k WHERE ${sameKey}`);
      await connection.run(`INSERT INTO ${table} BY NAME SELECT * FROM compact_rows`);
    }
    // Every uncompacted row left is the only row of its key: nothing to merge it with.
    await connection.run(`UPDATE ${table} SET compacted = true WHERE NOT compacted`);
    await connection.run('DROP TABLE compact_keys');
    await connection.run('DROP TABLE compact_rows');
    return { rowsBefore: before, rowsAfter: after };
  }

  async recordDeploy(deploy: Deploy): Promise<void> {
    await this.write((connection) =>
      connection.run(
        'INSERT INTO deploys (service, commit_id, ts) VALUES ($service, $commit, $ts) ON CONFLICT DO NOTHING',
        { service: deploy.service, commit: deploy.commit, ts: Math.round(deploy.ts) },
        { service: VARCHAR, commit: VARCHAR, ts: BIGINT },
      ),
    );
  }

  async deploys(service: string, range: Range = {}): Promise<Deploy[]> {
    const params: Params = { service };
    const types: ParamTypes = { service: VARCHAR };
    const rows = await this.query(
      `SELECT service, commit_id, ts::DOUBLE AS ts FROM deploys WHERE service = $service${rangeSql('ts', range, params, types)}
       ORDER BY ts, commit_id`,
      params,
      types,
    );
    return rows.map((r) => ({ service: String(r.service), commit: String(r.commit_id), ts: Number(r.ts) }));
  }

  async storeProfile(
    meta: ProfileMeta,
    pprof: Buffer,
    receivedAt: number,
    summary?: ProfileSummary,
  ): Promise<StoredProfile> {
    const profile: StoredProfile = {
      id: randomUUID(),
      service: meta.service,
      commit: meta.commit,
      host: meta.host,
      metric: meta.metric,
      from: meta.from,
      to: meta.to,
      receivedAt,
      bytes: pprof.length,
    };
    const from = Math.round(profile.from);
    const to = Math.round(profile.to);
    await this.transaction(async (connection) => {
      await connection.run(
        `INSERT INTO profiles (id, service, commit_id, host, metric, from_ms, to_ms, received_at, bytes, pprof)
         VALUES ($id, $service, $commit, $host, $metric, $from, $to, $receivedAt, $bytes, $pprof)`,
        {
          id: profile.id,
          service: profile.service,
          commit: profile.commit,
          host: profile.host,
          metric: profile.metric,
          from,
          to,
          receivedAt: Math.round(receivedAt),
          bytes: profile.bytes,
          pprof: blobValue(new Uint8Array(pprof.buffer, pprof.byteOffset, pprof.byteLength)),
        },
        {
          id: VARCHAR,
          service: VARCHAR,
          commit: VARCHAR,
          host: VARCHAR,
          metric: VARCHAR,
          from: BIGINT,
          to: BIGINT,
          receivedAt: BIGINT,
          bytes: BIGINT,
        },
      );
      if (!summary) return;
      const head = [profile.id, profile.service, profile.commit, profile.metric, BigInt(from), BigInt(to)];
      const endpointColumns: DuckDBValue[][] = PROFILE_ENDPOINT_TYPES.map(() => []);
      for (const e of summary.endpoints) {
        [...head, e.endpoint, e.flagKey, e.flagVariant, e.samples, e.cost].forEach((v, i) => {
          endpointColumns[i]?.push(v);
        });
      }
      const functionColumns: DuckDBValue[][] = PROFILE_FUNCTION_TYPES.map(() => []);
      for (const f of summary.functions) {
        [
          ...head,
          f.endpoint,
          f.flagKey,
          f.flagVariant,
          f.function,
          f.file,
          Math.round(f.line),
          f.selfSamples,
          f.selfCost,
          f.totalSamples,
          f.totalCost,
        ].forEach((v, i) => {
          functionColumns[i]?.push(v);
        });
      }
      await this.appendTo(connection, 'profile_endpoints', PROFILE_ENDPOINT_TYPES, endpointColumns);
      await this.appendTo(connection, 'profile_functions', PROFILE_FUNCTION_TYPES, functionColumns);
    });
    return profile;
  }

  /** WHERE clause and parameters shared by the two profile aggregate reads. */
  private profileWhere(q: ProfileQuery): { where: string; params: Params; types: ParamTypes; group: string } {
    const params: Params = { service: q.service };
    const types: ParamTypes = { service: VARCHAR };
    let where = 'service = $service';
    where += equalsSql('commit_id', 'commit', q.commit, params, types);
    where += equalsSql('endpoint', 'endpoint', q.endpoint, params, types);
    where += equalsSql('metric', 'metric', q.metric, params, types);
    where += equalsSql('flag_key', 'flagKey', q.flag?.key ?? '', params, types);
    if (q.flag !== undefined) where += equalsSql('flag_variant', 'flagVariant', q.flag.variant, params, types);
    where += rangeSql('from_ms', q, params, types);
    const group = `commit_id, endpoint, metric, flag_key, flag_variant${q.byProfile ? ', profile_id' : ''}`;
    return { where, params, types, group };
  }

  async profileEndpoints(q: ProfileQuery): Promise<ProfileEndpointRow[]> {
    const { where, params, types, group } = this.profileWhere(q);
    const rows = await this.query(
      `SELECT ${group}, count(DISTINCT profile_id)::DOUBLE AS profiles, sum(samples) AS samples, sum(cost) AS cost
       FROM profile_endpoints WHERE ${where} GROUP BY ${group} ORDER BY ${group}`,
      params,
      types,
    );
    return rows.map((r) => profileEndpointRow(r, q.byProfile === true, 'commit_id'));
  }

  async profileFunctions(q: ProfileQuery): Promise<ProfileFunctionRow[]> {
    const { where, params, types, group } = this.profileWhere(q);
    const rows = await this.query(
      `SELECT ${group}, function_name, file_name, line, sum(self_samples) AS self_samples, sum(self_cost) AS self_cost,
         sum(total_samples) AS total_samples, sum(total_cost) AS total_cost
       FROM profile_functions WHERE ${where} GROUP BY ${group}, function_name, file_name, line
       ORDER BY ${group}, function_name, file_name, line`,
      params,
      types,
    );
    return rows.map((r) => profileFunctionRow(r, q.byProfile === true, 'commit_id'));
  }

  async listProfiles(q: Range & { service: string; commit?: string }): Promise<StoredProfile[]> {
    const params: Params = { service: q.service };
    const types: ParamTypes = { service: VARCHAR };
    let where = 'service = $service';
    where += equalsSql('commit_id', 'commit', q.commit, params, types);
    where += rangeSql('from_ms', q, params, types);
    const rows = await this.query(
      `SELECT id, service, commit_id, host, metric, from_ms::DOUBLE AS from_ms, to_ms::DOUBLE AS to_ms,
         received_at::DOUBLE AS received_at, bytes::DOUBLE AS bytes
       FROM profiles WHERE ${where} ORDER BY from_ms, id`,
      params,
      types,
    );
    return rows.map((r) => ({
      id: String(r.id),
      service: String(r.service),
      commit: String(r.commit_id),
      host: String(r.host),
      metric: String(r.metric) as Metric,
      from: Number(r.from_ms),
      to: Number(r.to_ms),
      receivedAt: Number(r.received_at),
      bytes: Number(r.bytes),
    }));
  }

  async getProfile(id: string): Promise<Buffer | undefined> {
    const rows = await this.query('SELECT pprof FROM profiles WHERE id = $id', { id }, { id: VARCHAR });
    const value = rows[0]?.pprof;
    if (value === undefined) return undefined;
    if (value instanceof Uint8Array) return Buffer.from(value);
    return Buffer.alloc(0);
  }

  async services(): Promise<ServiceInfo[]> {
    await this.flushAggregates();
    const rows = await this.query(
      `SELECT service, min(min_ts)::DOUBLE AS first_seen, max(max_ts)::DOUBLE AS last_seen, sum(n)::DOUBLE AS samples,
         list(DISTINCT metric ORDER BY metric) AS metrics
       FROM aggregates_hourly WHERE flag_key = '' GROUP BY service ORDER BY service`,
    );
    return rows.map((r) => ({
      service: String(r.service),
      firstSeen: Number(r.first_seen),
      lastSeen: Number(r.last_seen),
      samples: Number(r.samples),
      metrics: (r.metrics as string[]).map((m) => m as Metric),
    }));
  }

  async commits(service: string, range: Range = {}): Promise<CommitInfo[]> {
    await this.flushAggregates();
    const params: Params = { service };
    const types: ParamTypes = { service: VARCHAR };
    const rows = await this.query(
      `WITH c AS (
         SELECT commit_id, min(min_ts) AS first_seen, max(max_ts) AS last_seen, sum(n) AS samples, sum(weight) AS requests
         FROM ${range.from === undefined && range.to === undefined ? 'aggregates_hourly' : 'aggregates'}
         WHERE service = $service AND flag_key = ''${rangeSql('minute', range, params, types)}
         GROUP BY commit_id),
       d AS (SELECT commit_id, min(ts) AS deployed_at FROM deploys WHERE service = $service GROUP BY commit_id)
       SELECT c.commit_id, c.first_seen::DOUBLE AS first_seen, c.last_seen::DOUBLE AS last_seen,
         c.samples::DOUBLE AS samples, c.requests, d.deployed_at::DOUBLE AS deployed_at
       FROM c LEFT JOIN d USING (commit_id) ORDER BY c.first_seen, c.commit_id`,
      params,
      types,
    );
    return rows.map((r) => ({
      commit: String(r.commit_id),
      firstSeen: Number(r.first_seen),
      lastSeen: Number(r.last_seen),
      samples: Number(r.samples),
      requests: Number(r.requests),
      deployedAt: r.deployed_at === null || r.deployed_at === undefined ? null : Number(r.deployed_at),
    }));
  }

  async endpoints(q: Range & { service: string; commit?: string; metric?: Metric }): Promise<EndpointStats[]> {
    const query: AggregateQuery = { service: q.service, groupBy: ['endpoint'], flags: 'none' };
    if (q.commit !== undefined) query.commit = q.commit;
    if (q.metric !== undefined) query.metric = q.metric;
    if (q.from !== undefined) query.from = q.from;
    if (q.to !== undefined) query.to = q.to;
    const aggregates = await this.aggregates(query);
    const params: Params = { service: q.service };
    const types: ParamTypes = { service: VARCHAR };
    let where = 'service = $service';
    where += equalsSql('commit_id', 'commit', q.commit, params, types);
    where += equalsSql('metric', 'metric', q.metric, params, types);
    where += rangeSql('minute', q, params, types);
    const countRows = await this.query(
      `SELECT endpoint, metric, sum(requests)::DOUBLE AS requests FROM counts WHERE ${where} GROUP BY endpoint, metric`,
      params,
      types,
    );
    const counted = new Map(countRows.map((r) => [`${r.metric}\u0000${r.endpoint}`, Number(r.requests)]));
    const stats: EndpointStats[] = aggregates.map((a) => {
      const requests = counted.get(`${a.metric}\u0000${a.endpoint}`) ?? a.weight;
      return {
        endpoint: a.endpoint,
        metric: a.metric,
        samples: a.n,
        requests,
        costMean: a.sumCost / a.n,
        costP50: quantile(a.costHist, 0.5),
        costP95: quantile(a.costHist, 0.95),
        wallP50: quantile(a.wallHist, 0.5),
        wallP95: quantile(a.wallHist, 0.95),
        dbMs: a.sumDb / a.n,
        cacheMs: a.sumCache / a.n,
        httpMs: a.sumHttp / a.n,
        share: 0,
      };
    });
    // Share of the metric's total estimated cost (mean cost × requests); metrics are never mixed.
    const totals = new Map<Metric, number>();
    for (const s of stats) totals.set(s.metric, (totals.get(s.metric) ?? 0) + s.costMean * s.requests);
    for (const s of stats) {
      const total = totals.get(s.metric) ?? 0;
      s.share = total > 0 ? (s.costMean * s.requests) / total : 0;
    }
    return stats.sort((a, b) => b.share - a.share || a.endpoint.localeCompare(b.endpoint));
  }

  async aggregates(q: AggregateQuery): Promise<AggregateRow[]> {
    await this.flushAggregates();
    const params: Params = { service: q.service };
    const types: ParamTypes = { service: VARCHAR };
    let where = 'service = $service';
    where += equalsSql('commit_id', 'commit', q.commit, params, types);
    where += equalsSql('endpoint', 'endpoint', q.endpoint, params, types);
    where += equalsSql('metric', 'metric', q.metric, params, types);
    const flags = q.flags ?? 'none';
    if (flags === 'none') where += " AND flag_key = ''";
    else if (flags !== 'all') {
      where += ' AND flag_key = $flagKey';
      params.flagKey = flags.key;
      types.flagKey = VARCHAR;
    }
    const source = aggregateSource(where, q, params, types);
    const groupBy = new Set(q.groupBy ?? ['commit', 'endpoint', 'hostClass', 'flag']);
    let bucket = '0::BIGINT';
    if (q.bucketMs !== undefined && q.bucketMs > 0) {
      bucket = '(minute // $bucketMs) * $bucketMs';
      params.bucketMs = Math.round(q.bucketMs);
      types.bucketMs = BIGINT;
    }
    // Dropped dimensions become '' so that their rows merge.
    const dims = [
      groupBy.has('commit') ? 'commit_id' : "''",
      groupBy.has('endpoint') ? 'endpoint' : "''",
      'metric',
      groupBy.has('hostClass') ? 'host_class' : "''",
      groupBy.has('flag') ? 'flag_key' : "''",
      groupBy.has('flag') ? 'flag_variant' : "''",
      bucket,
    ];
    const select = `${dims[0]} AS g_commit, ${dims[1]} AS g_endpoint, metric AS g_metric, ${dims[3]} AS g_host_class,
      ${dims[4]} AS g_flag_key, ${dims[5]} AS g_flag_variant, ${bucket} AS g_bucket`;
    const groupCols = 'g_commit, g_endpoint, g_metric, g_host_class, g_flag_key, g_flag_variant, g_bucket';
    const histograms = q.histograms ?? 'all';
    const withCost = histograms !== 'none';
    const withWall = histograms === 'all';
    // Histograms merged in SQL: bins unnested and summed per group, then joined to the group's sums.
    const mergedBins = (column: string, name: string): string =>
      histogramMergeCtes({ column, name, by: groupCols, countType: 'DOUBLE', entries: (list) => list });
    const ctes = [
      `f AS (SELECT ${select}, * FROM (${source}))`,
      `sums AS (
         SELECT ${groupCols}, sum(n)::DOUBLE AS n, sum(weight) AS weight, sum(sum_cost) AS sum_cost,
           sum(sum_cost2) AS sum_cost2, sum(sum_log_cost) AS sum_log_cost, sum(sum_log_cost2) AS sum_log_cost2,
           sum(sum_wall) AS sum_wall, sum(sum_db) AS sum_db, sum(sum_cache) AS sum_cache, sum(sum_http) AS sum_http
         FROM f GROUP BY ALL)`,
    ];
    if (withCost) ctes.push(mergedBins('cost_hist', 'cost'));
    if (withWall) ctes.push(mergedBins('wall_hist', 'wall'));
    const rows = await this.query(
      `WITH ${ctes.join(',\n       ')}
       SELECT sums.*, g_bucket::DOUBLE AS bucket${withCost ? ', cost.cost_hist' : ''}${withWall ? ', wall.wall_hist' : ''}
       FROM sums${withCost ? ` LEFT JOIN cost USING (${groupCols})` : ''}${withWall ? ` LEFT JOIN wall USING (${groupCols})` : ''}
       ORDER BY ${groupCols}`,
      params,
      types,
    );
    return rows.map((r) => ({
      service: q.service,
      commit: String(r.g_commit),
      endpoint: String(r.g_endpoint),
      metric: String(r.g_metric) as Metric,
      hostClass: String(r.g_host_class),
      flagKey: String(r.g_flag_key),
      flagVariant: String(r.g_flag_variant),
      bucket: Number(r.bucket),
      n: Number(r.n),
      weight: Number(r.weight),
      sumCost: Number(r.sum_cost),
      sumCost2: Number(r.sum_cost2),
      sumLogCost: Number(r.sum_log_cost),
      sumLogCost2: Number(r.sum_log_cost2),
      sumWall: Number(r.sum_wall),
      sumDb: Number(r.sum_db),
      sumCache: Number(r.sum_cache),
      sumHttp: Number(r.sum_http),
      costHist: mapToHist(r.cost_hist),
      wallHist: mapToHist(r.wall_hist),
    }));
  }

  async counts(q: Range & { service: string; endpoint?: string }): Promise<CountRow[]> {
    const params: Params = { service: q.service };
    const types: ParamTypes = { service: VARCHAR };
    let where = 'service = $service';
    where += equalsSql('endpoint', 'endpoint', q.endpoint, params, types);
    where += rangeSql('minute', q, params, types);
    const rows = await this.query(
      `SELECT minute::DOUBLE AS minute, endpoint, sum(requests)::DOUBLE AS requests FROM counts WHERE ${where}
       GROUP BY minute, endpoint ORDER BY minute, endpoint`,
      params,
      types,
    );
    return rows.map((r) => ({ minute: Number(r.minute), endpoint: String(r.endpoint), requests: Number(r.requests) }));
  }

  async users(q: Range & { service: string }): Promise<UsersRow[]> {
    const params: Params = { service: q.service };
    const types: ParamTypes = { service: VARCHAR };
    // The union of every sketch received for a minute, in one row once compacted (a few until then;
    // see mergeUsersMinutes): a day of the 10 M-sample benchmark is ~1 440 sketches instead of 12 000.
    const rows = await this.query(
      `SELECT minute::DOUBLE AS minute, sketch FROM users_merged
       WHERE service = $service${rangeSql('minute', q, params, types)} ORDER BY minute`,
      params,
      types,
    );
    const out: UsersRow[] = [];
    for (const r of rows) {
      const minute = Number(r.minute);
      const last = out[out.length - 1];
      if (last !== undefined && last.minute === minute) last.sketches.push(String(r.sketch));
      else out.push({ minute, sketches: [String(r.sketch)] });
    }
    for (const row of out) row.sketches.sort();
    return out;
  }

  async samples(
    q: Range & { service: string; commit?: string; endpoint?: string; limit?: number },
  ): Promise<StoredSample[]> {
    const params: Params = { service: q.service, limit: Math.max(0, Math.floor(q.limit ?? 1000)) };
    const types: ParamTypes = { service: VARCHAR, limit: BIGINT };
    let where = 'b.service = $service';
    where += equalsSql('b.commit_id', 'commit', q.commit, params, types);
    where += equalsSql('s.endpoint', 'endpoint', q.endpoint, params, types);
    where += rangeSql('s.ts', q, params, types);
    const rows = await this.query(
      `SELECT b.service, b.commit_id, b.host, b.region, b.host_class, b.metric, s.ts::DOUBLE AS ts, s.endpoint, s.status,
         s.cost, s.wall_ms, s.db_ms, s.cache_ms, s.http_ms, s.flags, s.user_id, s.weight, s.aborted
       FROM samples s JOIN batches b USING (batch_seq) WHERE ${where} ORDER BY s.ts DESC LIMIT $limit`,
      params,
      types,
    );
    return rows.map((r) => ({
      service: String(r.service),
      commit: String(r.commit_id),
      host: String(r.host),
      region: String(r.region),
      hostClass: String(r.host_class),
      metric: String(r.metric) as Metric,
      ...sampleFromRow(r),
    }));
  }

  async hostMoments(q: HostMomentsQuery): Promise<HostMomentsRow[]> {
    const params: Params = { service: q.service, bucket: hostBucketMs(q) };
    const types: ParamTypes = { service: VARCHAR, bucket: BIGINT };
    let where = 'b.service = $service';
    where += equalsSql('b.commit_id', 'commit', q.commit, params, types);
    where += equalsSql('s.endpoint', 'endpoint', q.endpoint, params, types);
    where += rangeSql('s.ts', q, params, types);
    const rows = await this.query(
      `SELECT b.commit_id, s.endpoint, b.metric, b.host_class, b.host,
         (CASE WHEN $bucket > 0 THEN s.ts // $bucket * $bucket ELSE 0 END)::DOUBLE AS bucket,
         count(*)::DOUBLE AS n, sum(s.cost) AS sum_cost, sum(s.cost * s.cost) AS sum_cost2,
         min(s.ts)::DOUBLE AS first_ts, max(s.ts)::DOUBLE AS last_ts
       FROM samples s JOIN batches b USING (batch_seq) WHERE ${where}
       GROUP BY ALL ORDER BY bucket, b.commit_id, s.endpoint, b.metric, b.host_class, b.host`,
      params,
      types,
    );
    return rows.map((r) => hostMomentsRow(r, 'commit_id'));
  }

  async sampleCount(service?: string): Promise<number> {
    const rows =
      service === undefined
        ? await this.query('SELECT count(*)::DOUBLE AS n FROM samples')
        : await this.query(
            `SELECT count(*)::DOUBLE AS n FROM samples
             WHERE batch_seq IN (SELECT batch_seq FROM batches WHERE service = $service)`,
            { service },
            { service: VARCHAR },
          );
    return Number(rows[0]?.n ?? 0);
  }

  async applyRetention(policy: RetentionPolicy, now: number): Promise<RetentionResult> {
    const samplesBefore = Math.round(now - policy.samplesDays * DAY_MS);
    const aggregatesBefore = Math.round(now - policy.aggregatesDays * DAY_MS);
    const profilesBefore = Math.round(now - policy.profilesDays * DAY_MS);
    const deleted = async (connection: DuckDBConnection, sql: string, before: number): Promise<number> => {
      const result = await connection.run(sql, { before }, { before: BIGINT });
      return Number(result.rowsChanged);
    };
    // Aggregates of every stored batch are written first: samples deleted below can no longer feed them.
    await this.flushAggregates();
    return this.transaction(async (connection) => {
      const samplesDeleted = await deleted(connection, 'DELETE FROM samples WHERE ts < $before', samplesBefore);
      // Both resolutions up to the same whole hour, so that they keep holding the same data.
      const aggregatesHour = Math.floor(aggregatesBefore / HOUR_MS) * HOUR_MS;
      const aggregatesDeleted =
        (await deleted(connection, 'DELETE FROM aggregates WHERE minute < $before', aggregatesHour)) +
        (await deleted(connection, 'DELETE FROM aggregates_hourly WHERE minute < $before', aggregatesHour));
      await deleted(connection, 'DELETE FROM counts WHERE minute < $before', aggregatesBefore);
      await deleted(connection, 'DELETE FROM users WHERE minute < $before', aggregatesBefore);
      await deleted(connection, 'DELETE FROM users_merged WHERE minute < $before', aggregatesBefore);
      await deleted(connection, 'DELETE FROM deploys WHERE ts < $before', aggregatesBefore);
      // Batch ids are remembered as long as raw samples (a retry comes minutes later, not weeks), and
      // as long as any of their samples remain (samples take service, commit and host from them).
      await deleted(
        connection,
        `DELETE FROM batches b WHERE received_at < $before
           AND NOT EXISTS (SELECT 1 FROM samples s WHERE s.batch_seq = b.batch_seq)`,
        samplesBefore,
      );
      const profilesDeleted = await deleted(connection, 'DELETE FROM profiles WHERE to_ms < $before', profilesBefore);
      // Decoded profile sums are aggregates: they outlive the raw pprof.
      await deleted(connection, 'DELETE FROM profile_endpoints WHERE to_ms < $before', aggregatesBefore);
      await deleted(connection, 'DELETE FROM profile_functions WHERE to_ms < $before', aggregatesBefore);
      return { samplesDeleted, aggregatesDeleted, profilesDeleted };
    });
  }

  /** Waits for queued writes, then closes the file (DuckDB checkpoints its WAL into it). Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    await this.initialising?.catch(() => undefined);
    if (this.flushTimer) clearInterval(this.flushTimer);
    // Not fatal: aggregates not written now are rebuilt from the samples by the next init().
    if (this.writer) await this.flushAggregates().catch(() => undefined);
    this.closed = true;
    await this.writes.run(async () => undefined);
    for (const reader of this.readers) await reader.queue.run(async () => undefined);
    for (const reader of this.readers) reader.connection.closeSync();
    this.readers = [];
    this.writer?.closeSync();
    this.instance?.closeSync();
    this.writer = undefined;
    this.instance = undefined;
  }
}

/** The aggregate tables' columns, in table order (see migrations.ts). */
const aggregateColumns = () =>
  columnsOf<[StoredAggregate, boolean]>([
    ['varchar', (r) => r.service],
    ['varchar', (r) => r.commit],
    ['varchar', (r) => r.endpoint],
    ['varchar', (r) => r.metric],
    ['varchar', (r) => r.hostClass],
    ['varchar', (r) => r.flagKey],
    ['varchar', (r) => r.flagVariant],
    ['bigint', (r) => r.minute],
    ['bigint', (r) => r.n],
    ['double', (r) => r.weight],
    ['double', (r) => r.sumCost],
    ['double', (r) => r.sumCost2],
    ['double', (r) => r.sumLogCost],
    ['double', (r) => r.sumLogCost2],
    ['double', (r) => r.sumWall],
    ['double', (r) => r.sumDb],
    ['double', (r) => r.sumCache],
    ['double', (r) => r.sumHttp],
    ['bigint', (r) => r.minTs],
    ['bigint', (r) => r.maxTs],
    ['hist', (r) => r.costHist],
    ['hist', (r) => r.wallHist],
    ['boolean', (_r, compacted) => compacted],
  ]);

/**
 * The `samples` columns of these batches. Numeric columns are typed arrays of the exact size, copied
 * into DuckDB's vectors as they are (and not scanned by the garbage collector meanwhile).
 */
export function sampleColumns(batches: ReadonlyArray<{ batch: IngestBatch; seq: number }>): Column[] {
  let total = 0;
  for (const { batch } of batches) total += batch.samples.length;
  const seqs = new Float64Array(total);
  const ts = new Float64Array(total);
  const endpoint: string[] = [];
  const status = new Int32Array(total);
  const cost = new Float64Array(total);
  const wall = new Float64Array(total);
  const db = new Float64Array(total);
  const cache = new Float64Array(total);
  const http = new Float64Array(total);
  const flags: string[] = [];
  const user: string[] = [];
  const weight = new Float64Array(total);
  const aborted = new Uint8Array(total);
  let i = 0;
  for (const { batch, seq } of batches) {
    for (const s of batch.samples) {
      seqs[i] = seq;
      ts[i] = s.ts;
      endpoint.push(s.endpoint);
      status[i] = s.status;
      cost[i] = s.cost;
      wall[i] = s.wallMs;
      db[i] = s.db;
      cache[i] = s.cache;
      http[i] = s.http;
      flags.push(flagsJson(s.flags));
      user.push(s.user);
      weight[i] = s.weight;
      aborted[i] = s.aborted ? 1 : 0;
      i++;
    }
  }
  return [
    { kind: 'bigint', values: seqs },
    { kind: 'bigint', values: ts },
    { kind: 'varchar', values: endpoint },
    { kind: 'integer', values: status },
    { kind: 'double', values: cost },
    { kind: 'double', values: wall },
    { kind: 'double', values: db },
    { kind: 'double', values: cache },
    { kind: 'double', values: http },
    { kind: 'varchar', values: flags },
    { kind: 'varchar', values: user },
    { kind: 'double', values: weight },
    { kind: 'boolean', values: aborted },
  ];
}

type Count = IngestBatch['counts'][number];
type Users = IngestBatch['users'][number];

/** The `counts` table's columns. */
const countColumns = () =>
  columnsOf<[IngestBatch, Count]>([
    ['varchar', (b) => b.service],
    ['varchar', (b) => b.commit],
    ['varchar', (b) => b.metric],
    ['varchar', (b) => b.host],
    ['bigint', (_b, c) => c.minute],
    ['varchar', (_b, c) => c.endpoint],
    ['bigint', (_b, c) => c.requests],
  ]);

/** The `users` table's columns. */
const userColumns = () =>
  columnsOf<[IngestBatch, Users]>([
    ['varchar', (b) => b.service],
    ['varchar', (b) => b.commit],
    ['varchar', (b) => b.host],
    ['bigint', (_b, u) => u.minute],
    ['varchar', (_b, u) => u.sketch],
  ]);

/** The `batches` table's columns. */
const batchColumns = () =>
  columnsOf<[IngestBatch, number]>([
    ['varchar', (b) => b.batchId],
    ['bigint', (_b, seq) => seq],
    ['varchar', (b) => b.service],
    ['varchar', (b) => b.host],
    ['varchar', (b) => b.region],
    ['varchar', (b) => b.commit],
    ['varchar', (b) => b.hostClass],
    ['varchar', (b) => b.metric],
    ['varchar', (b) => b.agentVersion],
    ['varchar', (b) => b.runtime],
    ['bigint', (b) => b.dropped],
    ['bigint', (b) => b.receivedAt],
    ['integer', (b) => b.samples.length],
  ]);

/** Appends column-wise rows to `table` inside the caller's transaction ({@link appendGuarded}). */
async function appendColumnarTo(connection: DuckDBConnection, table: string, columns: Column[]): Promise<void> {
  if ((columns[0]?.values.length ?? 0) === 0) return;
  await appendGuarded(connection, table, (appender) => appendColumnar(appender, columns));
}

/**
 * Appends to `table` what `fill` puts in a fresh appender, inside the caller's transaction. On failure
 * (e.g. a duplicate batch id) the appender's rows are discarded: left in it, they would be flushed again
 * when it is closed or garbage-collected, into whatever transaction is open then.
 */
async function appendGuarded(
  connection: DuckDBConnection,
  table: string,
  fill: (appender: DuckDBAppender) => void,
): Promise<void> {
  const appender = await connection.createAppender(table);
  try {
    fill(appender);
    appender.flushSync();
  } catch (error) {
    try {
      appender.clear();
      appender.closeSync();
    } catch {
      // the caller rolls the transaction back
    }
    throw error;
  }
  appender.closeSync();
}

/** Flags as a JSON object; '{}' (most samples) without calling JSON.stringify. */
function flagsJson(flags: Record<string, string>): string {
  for (const _key in flags) return JSON.stringify(flags);
  return '{}';
}

/** The per-sample fields of a `samples` row (see migrations.ts). */
function sampleFromRow(r: Record<string, unknown>): IngestBatch['samples'][number] {
  return {
    ts: Number(r.ts),
    endpoint: String(r.endpoint),
    status: Number(r.status),
    cost: Number(r.cost),
    wallMs: Number(r.wall_ms),
    db: Number(r.db_ms),
    cache: Number(r.cache_ms),
    http: Number(r.http_ms),
    flags: JSON.parse(String(r.flags)) as Record<string, string>,
    user: String(r.user_id),
    weight: Number(r.weight),
    aborted: Boolean(r.aborted),
  };
}

function mergePartial(into: PartialAggregate, from: PartialAggregate): void {
  into.n += from.n;
  into.weight += from.weight;
  into.sumCost += from.sumCost;
  into.sumCost2 += from.sumCost2;
  into.sumLogCost += from.sumLogCost;
  into.sumLogCost2 += from.sumLogCost2;
  into.sumWall += from.sumWall;
  into.sumDb += from.sumDb;
  into.sumCache += from.sumCache;
  into.sumHttp += from.sumHttp;
  into.minTs = Math.min(into.minTs, from.minTs);
  into.maxTs = Math.max(into.maxTs, from.maxTs);
  mergeHistogram(into.costHist, from.costHist);
  mergeHistogram(into.wallHist, from.wallHist);
}

/** Decodes a stored sketch; undefined for one that does not decode (stored before ingest checked them). */
function decodedSketch(text: string): UsersSketch | undefined {
  try {
    return decodeUsersSketch(text);
  } catch {
    return undefined;
  }
}

/** Sketches merged per (service, minute): the union of those that decode, and the others as they came. */
function unionByMinute(
  sketches: Iterable<{ service: string; minute: number; sketch: string }>,
): Map<string, { service: string; minute: number; sketch?: UsersSketch; raw: string[] }> {
  const merged = new Map<string, { service: string; minute: number; sketch?: UsersSketch; raw: string[] }>();
  for (const { service, minute, sketch: text } of sketches) {
    const key = JSON.stringify([service, minute]);
    let entry = merged.get(key);
    if (entry === undefined) {
      entry = { service, minute, raw: [] };
      merged.set(key, entry);
    }
    // A sketch that does not decode, or of another size, cannot be merged: it is kept as it came
    // (ingest refuses such sketches; a batch stored by other means may still hold one).
    const sketch = decodedSketch(text);
    if (sketch === undefined || (entry.sketch && entry.sketch.log2Registers !== sketch.log2Registers)) {
      if (!entry.raw.includes(text)) entry.raw.push(text);
    } else entry.sketch = entry.sketch ? mergeUsersSketches(entry.sketch, sketch) : sketch;
  }
  return merged;
}

/**
 * Appends the union of these sketches per (service, minute) to `users_merged`, inside the caller's
 * transaction (HyperLogLog union: register-wise maximum, so order and repeats do not matter). Only
 * appends: reading and rewriting a minute's row in every ingest transaction cost 50–100 ms each
 * (measured); a minute written by several transactions has several rows until compactUsersMerged().
 */
async function mergeUsersMinutes(
  connection: DuckDBConnection,
  sketches: ReadonlyArray<{ service: string; minute: number; sketch: string }>,
): Promise<number> {
  const merged = unionByMinute(sketches);
  if (merged.size === 0) return 0;
  const service: string[] = [];
  const minute: number[] = [];
  const sketch: string[] = [];
  for (const m of merged.values()) {
    for (const text of m.sketch ? [encodeUsersSketch(m.sketch), ...m.raw] : m.raw) {
      service.push(m.service);
      minute.push(m.minute);
      sketch.push(text);
    }
  }
  await appendColumnarTo(connection, 'users_merged', [
    { kind: 'varchar', values: service },
    { kind: 'bigint', values: minute },
    { kind: 'varchar', values: sketch },
  ]);
  return service.length;
}

/** Merges the `users_merged` rows of every (service, minute) that has several into one (in the caller's transaction). */
/** Rows of a `SELECT service, minute::DOUBLE AS minute, sketch` over users or users_merged. */
function sketchRows(result: DuckDBResultReader): Array<{ service: string; minute: number; sketch: string }> {
  return result
    .getRowObjectsJS()
    .map((r) => ({ service: String(r.service), minute: Number(r.minute), sketch: String(r.sketch) }));
}

async function compactUsersMerged(connection: DuckDBConnection): Promise<void> {
  await connection.run(`CREATE OR REPLACE TEMP TABLE users_keys AS
      SELECT service, minute FROM users_merged GROUP BY service, minute HAVING count(*) > 1`);
  const rows = await connection.runAndReadAll(
    'SELECT u.service, u.minute::DOUBLE AS minute, u.sketch FROM users_merged u SEMI JOIN users_keys k USING (service, minute)',
  );
  const sketches = sketchRows(rows);
  if (sketches.length > 0) {
    await connection.run(`DELETE FROM users_merged u WHERE EXISTS (SELECT 1 FROM users_keys k
        WHERE k.service = u.service AND k.minute = u.minute)`);
    await mergeUsersMinutes(connection, sketches);
  }
  await connection.run('DROP TABLE users_keys');
}

/**
 * Fills `users_merged` from the raw `users` rows of a file made before schema version 5 (once: the
 * store_state row 'users_merged_built' records it), a day at a time so memory stays bounded.
 */
async function buildUsersMerged(connection: DuckDBConnection): Promise<void> {
  const state = await connection.runAndReadAll(
    "SELECT value::DOUBLE AS v FROM store_state WHERE name = 'users_merged_built'",
  );
  if (Number(state.getRowObjectsJS()[0]?.v ?? 1) === 1) return;
  await connection.run('BEGIN TRANSACTION');
  try {
    await connection.run('DELETE FROM users_merged');
    const days = await connection.runAndReadAll(
      `SELECT DISTINCT (minute // ${DAY_MS})::DOUBLE AS day FROM users ORDER BY day`,
    );
    for (const { day } of days.getRowObjectsJS()) {
      const from = Number(day) * DAY_MS;
      const rows = await connection.runAndReadAll(
        'SELECT service, minute::DOUBLE AS minute, sketch FROM users WHERE minute >= $from AND minute < $to',
        { from, to: from + DAY_MS },
        { from: BIGINT, to: BIGINT },
      );
      await mergeUsersMinutes(connection, sketchRows(rows));
    }
    await connection.run("UPDATE store_state SET value = 1 WHERE name = 'users_merged_built'");
    await connection.run('COMMIT');
  } catch (error) {
    await connection.run('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

/**
 * A store on a DuckDB file (default `./ergometer.duckdb`). Call `init()` before use: it opens the
 * file, fails with ERGOMETER_DB_LOCKED when another process has it open, and creates or migrates
 * the schema (ERGOMETER_SCHEMA_TOO_NEW when the file is newer than this code).
 */
export function openDuckDbStore(options: DuckDbStoreOptions = {}): DuckDbStore {
  return new DuckDbStore(options);
}
