/**
 * Writing what is queued when the process ends, without keeping it alive otherwise.
 *
 * - `beforeExit` (the event loop ran dry: a script or a server that closed): flush, holding the process
 *   with one ref'd timer for at most `timeoutMs`. Node emits `beforeExit` again when the loop runs dry
 *   after that; with nothing queued the handler does nothing and the process exits.
 * - `SIGTERM`: by listening, the agent replaces Node's default action (terminate at once). So:
 *   - when the agent's is the only listener, it flushes for at most `timeoutMs`, removes itself and raises
 *     SIGTERM again: the process then ends exactly as it would have without the agent (killed by the
 *     signal, exit status 143 as seen by a shell), only up to `timeoutMs` later. A second SIGTERM during
 *     the flush ends it at once.
 *   - when the app (or another library) listens too, shutting down is its business: the agent only
 *     starts a flush and never exits (the flush holds the event loop until it is done, at most
 *     `timeoutMs`, so an app that lets the loop run dry still delivers). An app that calls `process.exit()` from its
 *     own handler should `await agent.shutdown()` first; nothing asynchronous survives `process.exit()`.
 * - `SIGINT` is left alone: Ctrl-C in development should stay immediate.
 */
export interface ExitFlushTarget {
  /** Whether anything is queued or on its way. */
  readonly hasPending: boolean;
  /** Flushes, giving up (and counting what is lost) after `timeoutMs`. Never rejects. */
  flushWithin(timeoutMs: number): Promise<void>;
}

/** Installs the handlers; returns the function that removes them. */
export function installExitFlush(target: ExitFlushTarget, timeoutMs: number): () => void {
  let sigtermFlushing = false;

  const onBeforeExit = () => {
    if (!target.hasPending) return;
    // Keeps the loop alive while the (unref'd) sockets and timers of the flush do their work.
    const hold = setTimeout(() => undefined, timeoutMs + 100);
    const release = () => clearTimeout(hold);
    target.flushWithin(timeoutMs).then(release, release);
  };

  const reraise = () => {
    process.removeListener('SIGTERM', onSigterm);
    process.kill(process.pid, 'SIGTERM');
  };

  const onSigterm = () => {
    const others = process.listeners('SIGTERM').filter((listener) => listener !== onSigterm).length;
    if (others > 0) {
      // The app decides when to exit; give the queue a head start.
      target.flushWithin(timeoutMs).catch(() => undefined);
      return;
    }
    if (sigtermFlushing) return reraise();
    sigtermFlushing = true;
    const hold = setTimeout(reraise, timeoutMs + 100);
    const done = () => {
      clearTimeout(hold);
      reraise();
    };
    target.flushWithin(timeoutMs).then(done, done);
  };

  process.on('beforeExit', onBeforeExit);
  process.on('SIGTERM', onSigterm);
  return () => {
    process.removeListener('beforeExit', onBeforeExit);
    process.removeListener('SIGTERM', onSigterm);
  };
}
