/**
 * Errors raised by a store backend. Each has a stable `code` (documented in docs/storage.md) and a
 * message that says what to do about it.
 */
export class StoreError extends Error {
  readonly code: StoreErrorCode;
  constructor(code: StoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreError';
    this.code = code;
  }
}

export type StoreErrorCode =
  /** Another process (usually another `ergometer serve`) holds the database file's write lock. */
  | 'ERGOMETER_DB_LOCKED'
  /** The database was written by a newer ergometer: its schema version is above what this code knows. */
  | 'ERGOMETER_SCHEMA_TOO_NEW'
  /** A schema migration failed; the database was left at its previous version. */
  | 'ERGOMETER_MIGRATION_FAILED'
  /** A method was called before init() or after close(). */
  | 'ERGOMETER_STORE_CLOSED'
  /** Store options are unusable (e.g. a ClickHouse database name that is not a plain identifier). */
  | 'ERGOMETER_STORE_BAD_CONFIG'
  /** The database server cannot be reached (ClickHouse down, wrong URL). */
  | 'ERGOMETER_STORE_UNAVAILABLE'
  /** A request to the database server timed out. */
  | 'ERGOMETER_STORE_TIMEOUT'
  /** The database server refused a query or a value cannot be written as given. */
  | 'ERGOMETER_STORE_QUERY_FAILED';
