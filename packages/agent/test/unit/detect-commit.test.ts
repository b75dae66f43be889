/**
 * detectCommit: ERGOMETER_COMMIT, then the CI and platform variables in order,
 * then `git rev-parse HEAD` in the working directory, then `unknown`.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, realpathSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ErgometerError } from '../../src/errors';
import { detectCommit, resolveOptions } from '../../src/options';

/** The documented order, most specific first (options.ts). A variable added there belongs here too. */
const COMMIT_VARIABLES = [
  'ERGOMETER_COMMIT',
  'GITHUB_SHA',
  'CI_COMMIT_SHA',
  'CIRCLE_SHA1',
  'BITBUCKET_COMMIT',
  'BUILDKITE_COMMIT',
  'DRONE_COMMIT_SHA',
  'TRAVIS_COMMIT',
  'GIT_COMMIT',
  'BUILD_SOURCEVERSION',
  'CODEBUILD_RESOLVED_SOURCE_VERSION',
  'SEMAPHORE_GIT_SHA',
  'APPVEYOR_REPO_COMMIT',
  'VERCEL_GIT_COMMIT_SHA',
  'RENDER_GIT_COMMIT',
  'RAILWAY_GIT_COMMIT_SHA',
  'CF_PAGES_COMMIT_SHA',
  'KOYEB_GIT_SHA',
  'HEROKU_SLUG_COMMIT',
  'SOURCE_VERSION',
  'COMMIT_REF',
  'K_REVISION',
];

describe('from the environment', () => {
  for (const [i, name] of COMMIT_VARIABLES.entries()) {
    test(`${name} wins over every variable after it`, () => {
      // Set this variable and all the later ones, each to a distinct value.
      const env = Object.fromEntries(COMMIT_VARIABLES.slice(i).map((later) => [later, `sha-of-${later}`]));
      assert.equal(detectCommit(env), `sha-of-${name}`);
    });
  }

  test('an empty variable is skipped', () => {
    assert.equal(detectCommit({ ERGOMETER_COMMIT: '', GITHUB_SHA: '', CI_COMMIT_SHA: 'c' }), 'c');
  });

  test('a malformed variable is refused, naming it, rather than sent in every batch', () => {
    assert.throws(
      () => detectCommit({ GITHUB_SHA: 'abc\ndef' }),
      (error: unknown) =>
        error instanceof ErgometerError && error.code === 'ERGOMETER_BAD_OPTION' && /GITHUB_SHA/.test(error.message),
    );
  });

  test('resolveOptions: the commit option beats ERGOMETER_COMMIT, which beats CI variables', () => {
    const env = { ERGOMETER_SERVICE: 's', ERGOMETER_COLLECTOR: 'file:x', ERGOMETER_COMMIT: 'e', GITHUB_SHA: 'g' };
    assert.equal(resolveOptions({ commit: 'o' }, env).commit, 'o');
    assert.equal(resolveOptions({}, env).commit, 'e');
    assert.equal(resolveOptions({}, { ...env, ERGOMETER_COMMIT: undefined }).commit, 'g');
  });
});

/**
 * detectCommit runs git in process.cwd(), so these run it in a child process
 * whose working directory is a temporary folder. The child's environment is
 * clean: no CI variables, no GIT_DIR, no global git configuration, and git may
 * not look above the temporary folder (GIT_CEILING_DIRECTORIES), so that the
 * checkout the tests run in cannot leak in.
 */
describe('from git', () => {
  let root: string;
  const optionsModule = require.resolve('../../src/options');

  before(() => {
    root = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'ergometer-commit-')));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    return {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: root,
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CEILING_DIRECTORIES: root,
      ...extra,
    };
  }

  function git(cwd: string, ...args: string[]): string {
    const result = spawnSync(
      'git',
      ['-c', 'user.name=t', '-c', 'user.email=t@example.com', '-c', 'init.defaultBranch=main', ...args],
      { cwd, env: cleanEnv(), encoding: 'utf8' },
    );
    assert.equal(result.status, 0, `git ${args.join(' ')}: ${result.stderr}`);
    return result.stdout.trim();
  }

  /** detectCommit({}) as seen from a process whose working directory is `cwd`. */
  function detectIn(cwd: string, env = cleanEnv()): string {
    const script = `process.stdout.write(require(${JSON.stringify(optionsModule)}).detectCommit({}))`;
    const result = spawnSync(process.execPath, ['-e', script], { cwd, env, encoding: 'utf8', timeout: 10_000 });
    assert.equal(result.status, 0, result.stderr);
    return result.stdout;
  }

  function folder(name: string): string {
    const dir = path.join(root, name);
    mkdirSync(dir);
    return dir;
  }

  test('in a git checkout: HEAD', () => {
    const repo = folder('repo');
    git(repo, 'init', '-q');
    git(repo, 'commit', '-q', '--allow-empty', '-m', 'first');
    const head = git(repo, 'rev-parse', 'HEAD');
    assert.match(head, /^[0-9a-f]{40}$/);
    assert.equal(detectIn(repo), head);

    // And from a subfolder of it, as a service started from its own folder in a monorepo.
    const sub = path.join(repo, 'packages', 'api');
    mkdirSync(sub, { recursive: true });
    assert.equal(detectIn(sub), head);

    // A new commit is seen: nothing is cached across processes.
    git(repo, 'commit', '-q', '--allow-empty', '-m', 'second');
    const second = git(repo, 'rev-parse', 'HEAD');
    assert.notEqual(second, head);
    assert.equal(detectIn(repo), second);
  });

  test('in a repository without commits: unknown', () => {
    const empty = folder('empty-repo');
    git(empty, 'init', '-q');
    assert.equal(detectIn(empty), 'unknown');
  });

  test('outside any git checkout: unknown', () => {
    assert.equal(detectIn(folder('plain')), 'unknown');
  });

  test('without git installed: unknown', () => {
    const repo = folder('repo-no-git');
    git(repo, 'init', '-q');
    git(repo, 'commit', '-q', '--allow-empty', '-m', 'first');
    // An empty PATH: execFileSync('git') fails with ENOENT, as in a slim container image.
    assert.equal(detectIn(repo, cleanEnv({ PATH: '' })), 'unknown');
  });

  test('the environment wins over git', () => {
    const repo = folder('repo-env');
    git(repo, 'init', '-q');
    git(repo, 'commit', '-q', '--allow-empty', '-m', 'first');
    const script = `process.stdout.write(require(${JSON.stringify(optionsModule)}).detectCommit(process.env))`;
    const result = spawnSync(process.execPath, ['-e', script], {
      cwd: repo,
      env: cleanEnv({ GITHUB_SHA: 'from-ci' }),
      encoding: 'utf8',
    });
    assert.equal(result.stdout, 'from-ci');
  });
});
