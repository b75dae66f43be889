#!/usr/bin/env node
/**
 * `ergometer` command line. The server, detectors and demo land with their
 * issues; until then each command says so plainly instead of pretending.
 */
import { VERSION } from '../version';

const USAGE = `ergometer ${VERSION}

Usage: ergometer <command> [options]

Commands:
  serve     ingest, detectors, alerts, query API and dashboard   (not available yet)
  detect    run every detector once                              (not available yet)
  compare   per-endpoint change between two commits              (not available yet)
  profile   function-level profile diff                          (not available yet)
  deploy    record a rollout                                     (not available yet)
  demo      the whole story on the embedded store                (not available yet)
  version   print the version
`;

const NOT_YET = new Set(['serve', 'detect', 'compare', 'profile', 'deploy', 'demo']);

function main(argv: string[]): number {
  const [command] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (command === 'version' || command === '--version') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  if (NOT_YET.has(command)) {
    process.stderr.write(
      `ergometer ${command}: not yet — this release ships the measurement core (@ergometer/counters, @ergometer/agent).\n` +
        'See docs/agent.md to instrument a service and write samples to a file: collector.\n',
    );
    return command === 'demo' ? 0 : 2;
  }
  process.stderr.write(`ergometer: unknown command "${command}"\n\n${USAGE}`);
  return 2;
}

process.exitCode = main(process.argv.slice(2));
