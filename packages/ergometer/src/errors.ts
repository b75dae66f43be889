/**
 * The error every collector route answers with: a stable `code` (ERGOMETER_*), the HTTP status, and a
 * message that names the bad field or says what to do. Serialised as
 * `{ "error": { "code": "...", "message": "..." } }`.
 */
export class ErgometerError extends Error {
  readonly code: string;
  readonly status: number;
  /** Extra response headers (e.g. Retry-After on 429). */
  readonly headers: Readonly<Record<string, string>>;

  constructor(code: string, status: number, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.name = 'ErgometerError';
    this.code = code;
    this.status = status;
    this.headers = headers;
  }
}

/** 400 for a batch (or deploy, or query) that does not match the contract. */
export function badRequest(code: string, message: string): ErgometerError {
  return new ErgometerError(code, 400, message);
}
