#!/usr/bin/env node
/** `ergometer` command line: one module per command, each with its usage text. */
import { DEMO_USAGE, demoCommand } from '../demo/run';
import { VERSION } from '../version';
import { DEPLOY_USAGE, deployCommand } from './deploy';
import { COMPARE_USAGE, compareCommand, DETECT_USAGE, detectCommand } from './detect';
import { PROFILE_USAGE, profileCommand } from './profile';
import { SERVE_USAGE, serveCommand } from './serve';

const USAGE = `ergometer ${VERSION}

Usage: ergometer <command> [options]

Commands:
  serve     ingest and query API on an embedded DuckDB file
  detect    run every detector once and print the alerts (--explain: why a rollout alerted or not)
  compare   per-endpoint change between two commits, with confidence intervals
  profile   function-level profile diff (profile diff --service S --base C1 --head C2)
  deploy    record a rollout
  demo      the whole story on the embedded store: a sample service, rollouts, a flag, alerts
  version   print the version

Run \`ergometer <command> --help\` for a command's options.
`;

const COMMANDS: Record<string, { run: (argv: string[]) => Promise<number>; usage: string }> = {
  serve: { run: (argv) => serveCommand(argv, process.env, out), usage: SERVE_USAGE },
  deploy: { run: (argv) => deployCommand(argv, process.env, out), usage: DEPLOY_USAGE },
  detect: { run: (argv) => detectCommand(argv, out), usage: DETECT_USAGE },
  compare: { run: (argv) => compareCommand(argv, out), usage: COMPARE_USAGE },
  profile: { run: (argv) => profileCommand(argv, out), usage: PROFILE_USAGE },
  demo: { run: (argv) => demoCommand(argv), usage: DEMO_USAGE },
};

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
  const known = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
  if (known) {
    try {
      return await known.run(rest);
    } catch (error) {
      // ErgometerError, StoreError, DetectorConfigError: a stable code and a message that says what to do.
      const code = (error as { code?: unknown }).code;
      if (error instanceof Error && typeof code === 'string' && code.startsWith('ERGOMETER_')) {
        process.stderr.write(`ergometer ${command}: ${error.message} (${code})\n`);
        if (code === 'ERGOMETER_USAGE') {
          process.stderr.write(`\n${known.usage}`);
          return 2;
        }
        return 1;
      }
      throw error;
    }
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
