// Runs every compiled test file (packages/*/dist/test/**/*.test.js) with
// node:test on the Node.js that runs this script. `npm test` builds first.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname ?? path.dirname(new URL(import.meta.url).pathname), '..');
const filter = process.argv.slice(2);

function collect(dir, out) {
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries) {
    const file = path.join(dir, name);
    if (statSync(file).isDirectory()) collect(file, out);
    else if (name.endsWith('.test.js')) out.push(file);
  }
  return out;
}

const files = readdirSync(path.join(root, 'packages'))
  .flatMap((pkg) => collect(path.join(root, 'packages', pkg, 'dist', 'test'), []))
  .filter((file) => filter.length === 0 || filter.some((f) => file.includes(f)))
  .sort();
if (files.length === 0) {
  console.error('no test files found: run `npm run build` first');
  process.exit(1);
}
console.log(`# node ${process.version}: ${files.length} test files`);
// One file at a time: several tests measure CPU cost and must not share the
// two cores with another test file.
const result = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...files], { stdio: 'inherit' });
process.exit(result.status ?? 1);
