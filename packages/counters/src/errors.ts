/** Error with a stable, documented `code` (see docs/counters.md). */
export class CountersError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CountersError';
    this.code = code;
  }
}
