/**
 * `npm run bench`: every benchmark, side by side in one run, on this machine;
 * prints each table as it completes and writes docs/benchmarks.md.
 * BENCH_QUICK=1 for a fast smoke run (fewer rounds; numbers not for the docs).
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { benchAttribution } from './attribution';
import { benchCounterRead } from './counter-read';
import { type BenchTable, describeMachine, renderTable } from './report';
import { benchThroughput } from './throughput';

async function main(): Promise<void> {
  const machine = describeMachine();
  const tables: BenchTable[] = [];
  for (const [name, bench] of [
    ['counter read', benchCounterRead],
    ['throughput', benchThroughput],
    ['attribution accuracy', benchAttribution],
  ] as const) {
    process.stderr.write(`== ${name}\n`);
    const table = await bench();
    tables.push(table);
    console.log(`${renderTable(table)}\n`);
  }
  const doc = [
    '# Benchmarks',
    '',
    'Made by `npm run bench` (bench/src/run.ts), all in one run on this machine:',
    '',
    machine,
    '',
    'Numbers from a shared 2-vCPU VM without hardware performance counters: the agent measures `cpu_ns` here, and ' +
      'a counter read is a ~1–2 µs syscall. Expect run-to-run spread of several percent; each table says how it was made.',
    '',
    ...tables.map(renderTable),
  ].join('\n');
  if (process.env.BENCH_QUICK === '1') {
    process.stderr.write('BENCH_QUICK=1: not writing docs/benchmarks.md\n');
    return;
  }
  const file = path.join(__dirname, '..', '..', '..', 'docs', 'benchmarks.md');
  writeFileSync(file, `${doc}\n`);
  process.stderr.write(`wrote ${file}\n`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
