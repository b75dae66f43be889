export type ClickHouseStoreErrorCode =
  | 'ERGOMETER_STORE_BAD_CONFIG'
  | 'ERGOMETER_STORE_BAD_QUERY'
  | 'ERGOMETER_STORE_BAD_ROW'
  | 'ERGOMETER_STORE_SCHEMA_NEWER'
  | 'ERGOMETER_STORE_NOT_INITIALISED'
  | 'ERGOMETER_STORE_UNAVAILABLE'
  | 'ERGOMETER_STORE_TIMEOUT';

/** An error of the ClickHouse store; `code` is stable, the message says what to do. */
export class ClickHouseStoreError extends Error {
  readonly code: ClickHouseStoreErrorCode;
  constructor(code: ClickHouseStoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ClickHouseStoreError';
    this.code = code;
  }
}
