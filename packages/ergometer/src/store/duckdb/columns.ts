/**
 * Column-wise appends to DuckDB tables, the store's hot write path.
 *
 * `@duckdb/node-api`'s DuckDBDataChunk.setColumns takes one DuckDBValue per cell (BigInt objects for
 * BIGINT, entry objects for MAP) and walks them one by one; on the ingest workload building the
 * sample chunks that way cost about as much CPU as DuckDB's own append (docs/benchmarks.md, ingest
 * floor). Here each numeric column of a chunk is filled into one typed array and copied into the
 * DuckDB vector with a single call; so are strings (writeStrings: short ones in place, a longer one
 * assigned through DuckDB once per chunk and shared by the rows that repeat it); a MAP(SMALLINT,
 * INTEGER) histogram column is written as its list entries plus its key and value child vectors,
 * three copies per chunk whatever the number of bins.
 *
 * The chunks are still node-api DuckDBDataChunk objects, appended with DuckDBAppender.appendDataChunk:
 * only the vector memory is written through `@duckdb/node-bindings`, the same native module node-api
 * uses (package.json pins the version node-api depends on).
 */

import { endianness } from 'node:os';
import {
  BIGINT,
  BOOLEAN,
  DOUBLE,
  type DuckDBAppender,
  DuckDBDataChunk,
  type DuckDBType,
  INTEGER,
  MAP,
  SMALLINT,
  VARCHAR,
} from '@duckdb/node-api';
import duckdb from '@duckdb/node-bindings';
import { StoreError } from '../errors';

/** One column of rows to append, in table order. Numbers of `bigint` columns are rounded to integers. */
export type Column =
  | { kind: 'bigint'; values: ArrayLike<number> }
  /** An Int32Array is copied as it is. */
  | { kind: 'integer'; values: ArrayLike<number> }
  /** A Float64Array is copied as it is. */
  | { kind: 'double'; values: ArrayLike<number> }
  /** A Uint8Array (0 or 1 per row) is copied as it is. */
  | { kind: 'boolean'; values: ArrayLike<boolean> | Uint8Array }
  | { kind: 'varchar'; values: string[] }
  /** MAP(SMALLINT, INTEGER): histogram bin → count. */
  | { kind: 'hist'; values: Array<ReadonlyMap<number, number>> };

export type ColumnKind = Column['kind'];

/** The value type a column of this kind holds per row. */
type ValueOf<K extends ColumnKind> = K extends 'varchar'
  ? string
  : K extends 'boolean'
    ? boolean
    : K extends 'hist'
      ? ReadonlyMap<number, number>
      : number;

/** One column of a {@link columnsOf} table: its kind and how a row's arguments give its value. */
export type ColumnSpec<Row extends unknown[]> = {
  [K in ColumnKind]: readonly [K, (...row: Row) => ValueOf<K>];
}[ColumnKind];

/**
 * Columns built a row at a time from the specs (table order): for the tables written beside the samples
 * (aggregates, counts, users, batches), whose rows are far fewer than samples. The samples fill typed
 * arrays by hand (sampleColumns in store.ts).
 */
export function columnsOf<Row extends unknown[]>(
  specs: ReadonlyArray<ColumnSpec<Row>>,
): { columns: Column[]; push(...row: Row): void } {
  const arrays = specs.map((): unknown[] => []);
  return {
    columns: specs.map(([kind], i) => ({ kind, values: arrays[i] }) as Column),
    push(...row: Row): void {
      for (let i = 0; i < specs.length; i++) (arrays[i] as unknown[]).push((specs[i] as ColumnSpec<Row>)[1](...row));
    },
  };
}

const DUCKDB_TYPE: Record<ColumnKind, DuckDBType> = {
  bigint: BIGINT,
  integer: INTEGER,
  double: DOUBLE,
  boolean: BOOLEAN,
  varchar: VARCHAR,
  hist: MAP(SMALLINT, INTEGER),
};

/** DuckDB's vector size: a data chunk holds at most this many rows. */
const CHUNK_ROWS = 2048;
const TWO_POW_32 = 4_294_967_296;

/** Reused scratch memory for one column of one chunk (16 bytes a row covers every fixed-size type here). */
let scratch = new ArrayBuffer(CHUNK_ROWS * 16);

function scratchOf(bytes: number): ArrayBuffer {
  if (scratch.byteLength < bytes) scratch = new ArrayBuffer(bytes);
  return scratch;
}

/** Writes `value` (an integer) as a little-endian int64 at `words[2 * i]`, without a BigInt. */
function setInt64(words: Int32Array, i: number, value: number): void {
  const high = Math.floor(value / TWO_POW_32);
  words[2 * i] = (value - high * TWO_POW_32) | 0;
  words[2 * i + 1] = high | 0;
}

/** Copies rows [start, start + rows) of a typed array whose layout is the vector's. */
function copyTyped(
  vector: duckdb.Vector,
  values: Int32Array | Float64Array | Uint8Array,
  start: number,
  rows: number,
): void {
  const size = values.BYTES_PER_ELEMENT;
  duckdb.copy_data_to_vector(vector, 0, values.buffer as ArrayBuffer, values.byteOffset + start * size, rows * size);
}

/**
 * Copies rows [start, start + rows) of a column whose vector holds `Typed` elements: as they are when the
 * column is already a `Typed` array, else converted through the scratch buffer (booleans as 0 or 1).
 */
function copyNumbers(
  vector: duckdb.Vector,
  values: ArrayLike<number> | ArrayLike<boolean>,
  Typed: Int32ArrayConstructor | Float64ArrayConstructor | Uint8ArrayConstructor,
  start: number,
  rows: number,
): void {
  if (values instanceof Typed) {
    copyTyped(vector, values, start, rows);
    return;
  }
  const bytes = rows * Typed.BYTES_PER_ELEMENT;
  const buffer = scratchOf(bytes);
  const out = new Typed(buffer, 0, rows);
  for (let i = 0; i < rows; i++) out[i] = Number(values[start + i]);
  duckdb.copy_data_to_vector(vector, 0, buffer, 0, bytes);
}

function writeColumn(vector: duckdb.Vector, column: Column, start: number, rows: number): void {
  switch (column.kind) {
    case 'bigint': {
      const buffer = scratchOf(rows * 8);
      const words = new Int32Array(buffer, 0, rows * 2);
      const values = column.values;
      for (let i = 0; i < rows; i++) {
        const value = Math.round(values[start + i] as number);
        // A BigInt conversion refused these before; written as bits they would be garbage.
        if (!Number.isSafeInteger(value)) {
          throw new StoreError(
            'ERGOMETER_STORE_QUERY_FAILED',
            `cannot store ${values[start + i]} in an integer column: give a finite number below 2^53`,
          );
        }
        setInt64(words, i, value);
      }
      duckdb.copy_data_to_vector(vector, 0, buffer, 0, rows * 8);
      return;
    }
    case 'integer':
      copyNumbers(vector, column.values, Int32Array, start, rows);
      return;
    case 'double':
      copyNumbers(vector, column.values, Float64Array, start, rows);
      return;
    case 'boolean':
      copyNumbers(vector, column.values, Uint8Array, start, rows);
      return;
    case 'varchar':
      writeStrings(vector, column.values, start, rows);
      return;
    case 'hist':
      writeHistograms(vector, column.values, start, rows);
      return;
  }
}

/** Bytes of one DuckDB string (`duckdb_string_t` in duckdb.h), and the most it holds in place. */
const STRING_BYTES = 16;
const INLINE_BYTES = 12;
/** The in-place layout's length field is a native uint32: written here for little-endian machines only. */
const INLINE_STRINGS = endianness() === 'LE';

/**
 * A VARCHAR column. Each call that hands DuckDB a JavaScript string costs ~200 ns (a conversion to
 * UTF-8 and a copy into the vector's string heap), three per sample. The rows are written instead as
 * `duckdb_string_t` (duckdb.h's public 16-byte struct: uint32 length, then the bytes of a string of
 * at most 12 bytes, zero-padded, or a 4-byte prefix and a pointer to the heap) in scratch memory and
 * copied with the numbers' single call:
 * - a string of at most 12 ASCII characters (user ids, '{}' for samples without flags, short
 *   endpoints) is laid out in place;
 * - a longer one is assigned through DuckDB once per chunk, at its first row, and its struct (whose
 *   pointer is into this vector's heap, alive as long as the chunk) copied to its other rows: an
 *   endpoint or a set of flags repeats many times in a chunk, so this is a few calls per chunk.
 */
function writeStrings(vector: duckdb.Vector, values: readonly string[], start: number, rows: number): void {
  if (!INLINE_STRINGS) {
    for (let i = 0; i < rows; i++) duckdb.vector_assign_string_element(vector, i, values[start + i] as string);
    return;
  }
  const bytes = rows * STRING_BYTES;
  const buffer = scratchOf(bytes);
  const data = new Uint8Array(buffer, 0, bytes);
  const words = new Uint32Array(buffer, 0, bytes / 4);
  data.fill(0);
  /** Rows of long strings, and for each the row where its string was first seen in this chunk. */
  const longRows: number[] = [];
  const firstRows: number[] = [];
  const firstRowOf = new Map<string, number>();
  for (let i = 0; i < rows; i++) {
    const value = values[start + i] as string;
    const n = value.length;
    let inline = n <= INLINE_BYTES;
    const at = i * STRING_BYTES;
    for (let j = 0; inline && j < n; j++) {
      const code = value.charCodeAt(j);
      if (code < 0x80) data[at + 4 + j] = code;
      else inline = false;
    }
    if (inline) {
      words[i * 4] = n;
      continue;
    }
    let first = firstRowOf.get(value);
    if (first === undefined) {
      first = i;
      firstRowOf.set(value, i);
      duckdb.vector_assign_string_element(vector, i, value);
    }
    longRows.push(i);
    firstRows.push(first);
  }
  if (longRows.length > 0) {
    // The structs DuckDB wrote for the first rows (vector_get_data reads a copy of the vector's memory).
    const assigned = duckdb.vector_get_data(vector, bytes);
    for (let k = 0; k < longRows.length; k++) {
      const from = (firstRows[k] as number) * STRING_BYTES;
      data.set(assigned.subarray(from, from + STRING_BYTES), (longRows[k] as number) * STRING_BYTES);
    }
  }
  duckdb.copy_data_to_vector(vector, 0, buffer, 0, bytes);
}

/** A MAP(SMALLINT, INTEGER) column: list entries (offset, length as uint64) and the key/value children. */
function writeHistograms(
  vector: duckdb.Vector,
  values: ReadonlyArray<ReadonlyMap<number, number>>,
  start: number,
  rows: number,
): void {
  let total = 0;
  for (let i = 0; i < rows; i++) total += (values[start + i] as ReadonlyMap<number, number>).size;
  const entries = new Int32Array(rows * 4);
  const keys = new Int16Array(Math.max(1, total));
  const counts = new Int32Array(Math.max(1, total));
  let offset = 0;
  for (let i = 0; i < rows; i++) {
    const hist = values[start + i] as ReadonlyMap<number, number>;
    // uint64 offset and length; both are far below 2^32 (at most CHUNK_ROWS × bins).
    entries[4 * i] = offset;
    entries[4 * i + 2] = hist.size;
    for (const [bin, count] of hist) {
      keys[offset] = bin;
      counts[offset] = count;
      offset++;
    }
  }
  duckdb.list_vector_reserve(vector, total);
  duckdb.list_vector_set_size(vector, total);
  duckdb.copy_data_to_vector(vector, 0, entries.buffer, 0, entries.byteLength);
  if (total === 0) return;
  const child = duckdb.list_vector_get_child(vector);
  duckdb.copy_data_to_vector(duckdb.struct_vector_get_child(child, 0), 0, keys.buffer, 0, total * 2);
  duckdb.copy_data_to_vector(duckdb.struct_vector_get_child(child, 1), 0, counts.buffer, 0, total * 4);
}

/**
 * Appends the rows of `columns` (all of the same length, in the table's column order) through
 * `appender`, in chunks of at most 2048 rows. The caller flushes and closes the appender.
 */
export function appendColumnar(appender: DuckDBAppender, columns: readonly Column[]): void {
  const rows = columns[0]?.values.length ?? 0;
  for (const column of columns) {
    if (column.values.length !== rows) {
      throw new Error(`appendColumnar: columns of ${rows} and ${column.values.length} rows (a bug in the store)`);
    }
  }
  const types = columns.map((column) => DUCKDB_TYPE[column.kind]);
  for (let start = 0; start < rows; start += CHUNK_ROWS) {
    const count = Math.min(CHUNK_ROWS, rows - start);
    const chunk = DuckDBDataChunk.create(types, count);
    for (let c = 0; c < columns.length; c++) {
      writeColumn(duckdb.data_chunk_get_vector(chunk.chunk, c), columns[c] as Column, start, count);
    }
    appender.appendDataChunk(chunk);
  }
}
