/**
 * What the demo prints: plain lines, plus — on a terminal — one status line rewritten in place
 * (elapsed time, requests, rate, what each host runs). Without a terminal (CI, a pipe) the status is
 * a plain line every few seconds, so logs stay readable.
 */
export class DemoDisplay {
  private status = '';
  private lastPlainStatusMs = 0;
  private readonly tty: boolean;

  constructor(
    private readonly stream: NodeJS.WriteStream | NodeJS.WritableStream,
    private readonly plainStatusEveryMs = 5_000,
  ) {
    this.tty = (stream as NodeJS.WriteStream).isTTY === true;
  }

  /** Prints a line (above the status line on a terminal). */
  line(text = ''): void {
    if (this.tty && this.status !== '') this.stream.write('\r\x1b[2K');
    this.stream.write(`${text}\n`);
    if (this.tty && this.status !== '') this.stream.write(this.status);
  }

  /** Replaces the status line (terminal), or prints it now and then (otherwise). */
  setStatus(text: string): void {
    if (this.tty) {
      const width = (this.stream as NodeJS.WriteStream).columns ?? 120;
      this.status = text.length > width - 1 ? `${text.slice(0, width - 2)}…` : text;
      this.stream.write(`\r\x1b[2K${this.status}`);
      return;
    }
    const now = Date.now();
    if (now - this.lastPlainStatusMs >= this.plainStatusEveryMs) {
      this.lastPlainStatusMs = now;
      this.stream.write(`${text}\n`);
    }
  }

  /** Ends the status line (before a table or the end). */
  clearStatus(): void {
    if (this.tty && this.status !== '') this.stream.write('\r\x1b[2K');
    this.status = '';
    this.lastPlainStatusMs = 0;
  }
}

/** Renders rows as a text table with a header rule; columns padded to their widest cell. */
export function textTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const render = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] as number))
      .join('  ')
      .trimEnd();
  return [render(header), widths.map((w) => '─'.repeat(w)).join('  '), ...rows.map(render)].join('\n');
}
