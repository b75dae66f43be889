import { appendFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Exporter, WireBatch } from './wire';

/**
 * The `file:` collector: appends each batch as one line of NDJSON. Appends are
 * chained so that lines never interleave, and asynchronous so that the event
 * loop never waits on the disk.
 */
export class FileExporter implements Exporter {
  private tail: Promise<void> = Promise.resolve();
  private directoryReady: Promise<unknown> | undefined;

  constructor(readonly file: string) {}

  /** `file:./samples.ndjson` (relative to the working directory) or `file:///abs/path.ndjson`. */
  static fromUrl(collector: string): FileExporter {
    const file = collector.startsWith('file://') ? fileURLToPath(collector) : collector.slice('file:'.length);
    return new FileExporter(path.resolve(file));
  }

  send(batch: WireBatch): Promise<void> {
    const line = `${JSON.stringify(batch)}\n`;
    this.directoryReady ??= mkdir(path.dirname(this.file), { recursive: true }).catch(() => undefined);
    const write = this.tail.then(() => this.directoryReady).then(() => appendFile(this.file, line));
    // The chain continues after a failed write; the caller sees the failure.
    this.tail = write.catch(() => undefined);
    return write;
  }

  close(): Promise<void> {
    return this.tail;
  }
}
