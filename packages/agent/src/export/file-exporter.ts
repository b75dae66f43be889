import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Exporter, ProfileUpload, WireBatch } from './wire';

/**
 * The `file:` collector: appends each batch as one line of NDJSON. Appends are
 * chained so that lines never interleave, and asynchronous so that the event
 * loop never waits on the disk.
 *
 * Profiles go beside the NDJSON file, in a folder named after it: `samples.ndjson` →
 * `samples.profiles/<from>-<to>-<host>-<pid>.pb.gz` (gzipped pprof, what `POST /v1/profiles` takes),
 * and one line per profile in `samples.profiles/index.ndjson`:
 * `{"service","commit","host","metric","from","to","file"}` (`file` relative to that folder).
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

  /** The folder profiles are written to. */
  get profilesDir(): string {
    const ext = path.extname(this.file);
    return path.join(path.dirname(this.file), `${path.basename(this.file, ext)}.profiles`);
  }

  sendProfile(profile: ProfileUpload): Promise<void> {
    const dir = this.profilesDir;
    const host = profile.host.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 64);
    const name = `${profile.from}-${profile.to}-${host}-${process.pid}.pb.gz`;
    const { pprof, ...meta } = profile;
    const line = `${JSON.stringify({ ...meta, file: name })}\n`;
    const write = this.tail
      .then(() => mkdir(dir, { recursive: true }))
      .then(() => writeFile(path.join(dir, name), pprof))
      // The index line comes last: a reader never finds a line whose file is not complete.
      .then(() => appendFile(path.join(dir, 'index.ndjson'), line));
    this.tail = write.catch(() => undefined);
    return write;
  }

  close(): Promise<void> {
    return this.tail;
  }
}
