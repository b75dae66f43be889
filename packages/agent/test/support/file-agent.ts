/** A fresh in-process agent writing to a temp NDJSON file, and a way to read back what it wrote. */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Agent } from '../../src/agent';
import type { WireBatch } from '../../src/export/wire';
import { type AgentOptions, resolveOptions } from '../../src/options';

export class FileAgent {
  readonly agent: Agent;
  private readonly dir: string;
  private readonly file: string;

  constructor(options: AgentOptions) {
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'ergometer-file-agent-'));
    this.file = path.join(this.dir, 'samples.ndjson');
    this.agent = new Agent(
      resolveOptions({
        service: 'svc',
        collector: `file:${this.file}`,
        commit: 'c',
        exitFlushTimeoutMs: 0,
        ...options,
      }),
    );
  }

  /** Shuts the agent down and returns every batch it wrote. */
  async batches(): Promise<WireBatch[]> {
    await this.agent.shutdown();
    let text = '';
    try {
      text = readFileSync(this.file, 'utf8');
    } catch {
      // Nothing written.
    }
    return text
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as WireBatch);
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
