/**
 * `npm run bench`: every benchmark, side by side in one run on this machine;
 * prints each table as it completes and writes docs/benchmarks.md.
 * BENCH_QUICK=1 for a fast smoke run (fewer rounds; numbers not for the docs,
 * so the file is not written). BENCH_ONLY=ingest,'endpoints latency' runs only the named
 * benchmarks (comma-separated) and prints their tables without writing the file; add
 * BENCH_WRITE=1 to replace just their sections of docs/benchmarks.md (the rest is kept).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { benchAgentSideBySide } from './agent-ab';
import { benchAttribution } from './attribution';
import { benchBackend } from './backend';
import { benchCounterRead } from './counter-read';
import { benchDashboard } from './dashboard';
import { benchFalseAlerts } from './detection/false-alerts';
import { benchFlagLooks } from './detection/flag-looks';
import { benchDetectionPower, benchTimeToAlert } from './detection/power';
import { benchProcessCanaries } from './detection/process-canaries';
import { benchSimulatedFlagsTrends, benchSimulatedRollouts } from './detection/simulator';
import { benchExporter } from './exporter';
import { benchEndpointsLatency, benchIngest, benchIngestFloor } from './ingest';
import { benchInstructions } from './instructions';
import { benchProfiler } from './profiler';
import { benchProfilerSamplers, benchProfilerSideBySide } from './profiler-ab';
import { benchProfilerNotChosen } from './profiler-not-chosen';
import { benchProfilerParts } from './profiler-parts';
import { benchProfilerTimeline } from './profiler-timeline';
import { type BenchTable, describeMachine, renderTable } from './report';
import { benchThroughput } from './throughput';

const BENCHMARKS: readonly (readonly [string, () => Promise<BenchTable>])[] = [
  ['counter read', benchCounterRead],
  ['throughput', benchThroughput],
  ['agent side by side', benchAgentSideBySide],
  ['instructions', benchInstructions],
  ['backend instrumentation', benchBackend],
  ['attribution accuracy', benchAttribution],
  ['detection power', benchDetectionPower],
  ['time to alert', benchTimeToAlert],
  ['simulated rollouts', benchSimulatedRollouts],
  ['simulated flags and trends', benchSimulatedFlagsTrends],
  ['false alerts', benchFalseAlerts],
  ['flag looks', benchFlagLooks],
  ['process canaries', benchProcessCanaries],
  ['exporter', benchExporter],
  ['ingest', benchIngest],
  ['ingest floor', benchIngestFloor],
  ['endpoints latency', benchEndpointsLatency],
  ['dashboard', benchDashboard],
  ['profiler', benchProfiler],
  ['profiler parts', benchProfilerParts],
  ['profiler side by side', benchProfilerSideBySide],
  ['profiler samplers', benchProfilerSamplers],
  ['profiler not chosen', benchProfilerNotChosen],
  ['profiler timeline', benchProfilerTimeline],
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
    'Made by `npm run bench` (bench/src/run.ts) on this machine, in one run of ' +
      `${minutes.toFixed(1)} minutes; a section re-run alone since (\`BENCH_ONLY=<name> BENCH_WRITE=1\`) replaces its own, and ` +
      'says in its title which Node.js it ran on where that matters. Run it again on yours; each table says how it was measured.',
    '',
    machine,
    '',
    ...tables.map(renderTable),
  ].join('\n');
  if (only !== undefined && process.env.BENCH_WRITE === '1' && process.env.BENCH_QUICK !== '1') {
    writeFileSync(DOC_FILE, replaceSections(readFileSync(DOC_FILE, 'utf8'), tables));
    process.stderr.write(`replaced ${tables.length} section(s) of ${DOC_FILE}\n`);
    return;
  }
  if (process.env.BENCH_QUICK === '1' || only !== undefined) {
    process.stderr.write('BENCH_QUICK=1 or BENCH_ONLY: not writing docs/benchmarks.md\n');
    return;
  }
  writeFileSync(DOC_FILE, `${doc}\n`);
  process.stderr.write(`wrote ${DOC_FILE}\n`);
}

/**
 * The document with each table's section (from its `## title` to the next `## `) replaced by the
 * new rendering; a table without a section yet goes before the next table of the run that has one
 * (else after the previous one, else at the end).
 */
function replaceSections(doc: string, tables: BenchTable[]): string {
  const sectionAt = (text: string, title: string): [number, number] | undefined => {
    const start = text.indexOf(`## ${title}\n`);
    if (start < 0) return undefined;
    const next = text.indexOf('\n## ', start + 3);
    return [start, next < 0 ? text.length : next + 1];
  };
  let out = doc;
  for (const table of tables) {
    const rendered = `${renderTable(table).trimEnd()}\n\n`;
    const at = sectionAt(out, table.title);
    if (at) {
      out = out.slice(0, at[0]) + rendered + out.slice(at[1]);
      continue;
    }
    // Before the next table of this run that has a section, else after the previous one, else at the end.
    const later = tables
      .slice(tables.indexOf(table) + 1)
      .map((t) => sectionAt(out, t.title))
      .find((x) => x !== undefined);
    const earlier = tables
      .slice(0, tables.indexOf(table))
      .map((t) => sectionAt(out, t.title))
      .filter((x) => x !== undefined)
      .pop();
    if (!later && !earlier) out = `${out.trimEnd()}\n\n`;
    const insertAt = later ? later[0] : earlier ? earlier[1] : out.length;
    out = `${out.slice(0, insertAt)}${rendered}${out.slice(insertAt)}`;
  }
  return `${out.trimEnd()}\n`;
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
