/**
 * The repository's root: the nearest directory above this file that holds package.json. Tests run
 * from the compiled tree (.test-build/, see scripts/build-tests.ts) as well as from the sources, so
 * a fixed number of `../` from import.meta.url would point into the build in one of the two.
 */
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(from: string): string {
  let dir = dirname(fileURLToPath(from));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${from}`);
    dir = up;
  }
  return dir;
}

/** Absolute path of the repository root, without a trailing slash. */
export const ROOT = findRoot(import.meta.url);

/**
 * Node arguments that start the server: the compiled entry when the tests themselves run compiled
 * (npm test: `.test-build/`, as `npm run start:prod` runs dist/), the sources through tsx otherwise.
 */
export const SERVER_ARGS: readonly string[] = import.meta.url.endsWith('.js') ? [join(ROOT, '.test-build/src/server.js')] : ['--import', 'tsx', join(ROOT, 'src/server.ts')];

/** Where tests keep what they build once per checkout (the PGlite template, the RSA key); never committed. */
export const TEST_CACHE_DIR = join(ROOT, 'node_modules/.cache/twofold-test');

/** Writes `name` in TEST_CACHE_DIR aside and renames it: test processes starting together never read half a file. */
export function writeCacheFile(name: string, data: string | Uint8Array, mode = 0o644): string {
  mkdirSync(TEST_CACHE_DIR, { recursive: true });
  const file = join(TEST_CACHE_DIR, name);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, data, { mode });
  renameSync(tmp, file);
  return file;
}
