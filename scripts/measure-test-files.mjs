/* global console, performance, process */
// `npm run test:weights`: runs every npm-test file in a process of its own, two at a time (as CI's two
// cores do), and writes how long each took to test/file-weights.json. scripts/build-tests.mjs balances
// the suite's chunks with those figures; they only steer the balance, never what runs.
import { spawn } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';

const dirs = ['unit', 'db', 'routes', 'e2e'];
const files = dirs.flatMap((d) => readdirSync(`.test-build/test/${d}`).filter((f) => f.endsWith('.test.js')).map((f) => `test/${d}/${f}`));
const seconds = {};
let next = 0;
let failed = 0;
async function worker() {
  while (next < files.length) {
    const file = files[next++];
    const started = performance.now();
    const code = await new Promise((resolve) => {
      spawn(process.execPath, ['--liftoff-only', '--no-opt', '--test', `.test-build/${file}`], { stdio: 'ignore' }).on('exit', resolve);
    });
    seconds[file.replace(/\.js$/, '.ts')] = Math.round((performance.now() - started) / 100) / 10;
    if (code !== 0) {
      failed++;
      console.error(`failed: ${file}`);
    }
  }
}
await Promise.all([worker(), worker()]);
const sorted = Object.fromEntries(Object.entries(seconds).sort(([a], [b]) => a.localeCompare(b)));
writeFileSync('test/file-weights.json', `${JSON.stringify({ about: 'seconds per test file alone, two at a time; written by npm run test:weights', seconds: sorted }, null, 1)}\n`);
console.log(`test/file-weights.json: ${files.length} files${failed ? `, ${failed} failed` : ''}`);
process.exitCode = failed ? 1 : 0;
