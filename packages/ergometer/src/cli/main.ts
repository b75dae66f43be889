#!/usr/bin/env node
/**
 * `ergometer` command line. `serve` and `deploy` work; the detectors and the demo land with their
 * issues, and until then those commands say so plainly instead of pretending.
 */
import { VERSION } from '../version';
import { DEPLOY_USAGE, deployCommand } from './deploy';
import { SERVE_USAGE, serveCommand } from './serve';

const USAGE = `ergometer ${VERSION}

Usage: ergometer <command> [options]

Commands:
  serve     ingest and query API on an embedded DuckDB file
  detect    run every detector once                              (not available yet)
  compare   per-endpoint change between two commits              (not available yet)
  profile   function-level profile diff                          (not available yet)
  deploy    record a rollout
  demo      the whole story on the embedded store                (not available yet)
  version   print the version

Run \`ergometer <command> --help\` for a command's options.
`;

const NOT_YET = new Set(['detect', 'compare', 'profile', 'demo']);

const out = (text: string): void => {
  process.stdout.write(text);
};

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (command === 'version' || command === '--version') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  if (command === 'serve' || command === 'deploy') {
    try {
      return command === 'serve'
        ? await serveCommand(rest, process.env, out)
        : await deployCommand(rest, process.env, out);
    } catch (error) {
      // ErgometerError and the stores' StoreError: a stable code and a message that says what to do.
      const code = (error as { code?: unknown }).code;
      if (error instanceof Error && typeof code === 'string' && code.startsWith('ERGOMETER_')) {
        process.stderr.write(`ergometer ${command}: ${error.message} (${code})\n`);
        if (code === 'ERGOMETER_USAGE') {
          process.stderr.write(`\n${command === 'serve' ? SERVE_USAGE : DEPLOY_USAGE}`);
          return 2;
        }
        return 1;
      }
      throw error;
    }
  }
  if (NOT_YET.has(command)) {
    process.stderr.write(
      `ergometer ${command}: not yet — this release ships the measurement core (@ergometer/counters, @ergometer/agent) and the collector (ergometer serve).\n` +
        'See docs/agent.md to instrument a service and docs/operations.md to run the collector.\n',
    );
    return command === 'demo' ? 0 : 2;
  }
  process.stderr.write(`ergometer: unknown command "${command}"\n\n${USAGE}`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`ergometer: ${(error as Error)?.stack ?? String(error)}\n`);
    process.exitCode = 1;
  },
);
