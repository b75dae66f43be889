/**
 * Every error the agent raises has a stable `code`, documented in docs/agent.md,
 * and a message that says what to do about it.
 */
export class ErgometerError extends Error {
  readonly code: ErgometerErrorCode;
  constructor(code: ErgometerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ErgometerError';
    this.code = code;
  }
}

export type ErgometerErrorCode =
  /** An option or environment variable has a value the agent cannot use. */
  | 'ERGOMETER_BAD_OPTION'
  /** The collector URL uses a scheme this agent cannot send to. */
  | 'ERGOMETER_UNSUPPORTED_COLLECTOR'
  /** start() was called while another agent is running in this process. */
  | 'ERGOMETER_ALREADY_STARTED'
  /** The collector refused a batch for good (a 4xx other than 408 and 429); the batch was dropped. */
  | 'ERGOMETER_COLLECTOR_REJECTED'
  /** The collector could not be reached or kept failing until the agent had to give up (shutdown deadline). */
  | 'ERGOMETER_EXPORT_ABORTED'
  /** A users sketch (wire `users[].sketch`) is not one this code can read. */
  | 'ERGOMETER_BAD_SKETCH';
