import os from 'node:os';

/** One table of the benchmark report (docs/benchmarks.md). */
export interface BenchTable {
  title: string;
  /** What was measured and how, in a sentence or two of Markdown. */
  description: string;
  columns: string[];
  rows: (string | number)[][];
  /** Conclusions and arithmetic shown under the table (Markdown). */
  notes?: string[];
}

/** The machine a report was made on, printed at the top of docs/benchmarks.md. */
export function describeMachine(): string {
  const cpus = os.cpus();
  return [
    `- CPU: ${cpus[0]?.model ?? 'unknown'} × ${cpus.length}`,
    `- Memory: ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`,
    `- Kernel: ${os.type()} ${os.release()}`,
    `- Node.js: ${process.version}`,
    `- Date: ${new Date().toISOString()}`,
  ].join('\n');
}

export function renderTable(table: BenchTable): string {
  const head = `| ${table.columns.join(' | ')} |\n|${table.columns.map(() => '---').join('|')}|`;
  const body = table.rows.map((row) => `| ${row.map(String).join(' | ')} |`).join('\n');
  const notes = (table.notes ?? []).map((note) => `\n${note}\n`).join('');
  return `## ${table.title}\n\n${table.description}\n\n${head}\n${body}\n${notes}`;
}
