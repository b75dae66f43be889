/**
 * `npm run bench`: every benchmark, side by side in one run on this machine;
 * prints each table as it completes and writes docs/benchmarks.md.
 * BENCH_QUICK=1 for a fast smoke run (fewer rounds; numbers not for the docs,
 * so the file is not written). BENCH_ONLY=ingest,'endpoints latency' runs only the named
 * benchmarks (comma-separated) and prints their tables without writing the file.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { benchAttribution } from './attribution';
import { benchBackend } from './backend';
import { benchCounterRead } from './counter-read';
import { benchFalseAlerts } from './detection/false-alerts';
import { benchDetectionPower, benchTimeToAlert } from './detection/power';
import { benchExporter } from './exporter';
import { benchEndpointsLatency, benchIngest, benchIngestFloor } from './ingest';
import { benchProfiler } from './profiler';
import { type BenchTable, describeMachine, renderTable } from './report';
import { benchThroughput } from './throughput';

const BENCHMARKS: readonly (readonly [string, () => Promise<BenchTable>])[] = [
  ['counter read', benchCounterRead],
  ['throughput', benchThroughput],
  ['backend instrumentation', benchBackend],
  ['attribution accuracy', benchAttribution],
  ['detection power', benchDetectionPower],
  ['time to alert', benchTimeToAlert],
  ['false alerts', benchFalseAlerts],
  ['exporter', benchExporter],
  ['ingest', benchIngest],
  ['ingest floor', benchIngestFloor],
  ['endpoints latency', benchEndpointsLatency],
  ['profiler', benchProfiler],
];

const DOC_FILE = path.join(__dirname, '..', '..', '..', 'docs', 'benchmarks.md');

async function main(): Promise<void> {
  const machine = describeMachine();
  const tables: BenchTable[] = [];
  const started = performance.now();
  const only = process.env.BENCH_ONLY?.split(',').map((name) => name.trim());
  for (const [name, bench] of BENCHMARKS) {
    if (only !== undefined && !only.includes(name)) continue;
    process.stderr.write(`== ${name}\n`);
    const benchStarted = performance.now();
    const table = await bench();
    tables.push(table);
    console.log(`${renderTable(table)}\n`);
    process.stderr.write(`== ${name}: ${((performance.now() - benchStarted) / 1000).toFixed(0)} s\n`);
  }
  const minutes = (performance.now() - started) / 60_000;
  const doc = [
    '# Benchmarks',
    '',
    'Made by `npm run bench` (bench/src/run.ts): every table below comes from one run on this machine, ' +
      `which took ${minutes.toFixed(1)} minutes. Run it again on yours; each table says how it was measured.`,
    '',
    machine,
    '',
    ...tables.map(renderTable),
  ].join('\n');
  if (process.env.BENCH_QUICK === '1' || only !== undefined) {
    process.stderr.write('BENCH_QUICK=1 or BENCH_ONLY: not writing docs/benchmarks.md\n');
    return;
  }
  writeFileSync(DOC_FILE, `${doc}\n`);
  process.stderr.write(`wrote ${DOC_FILE}\n`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
