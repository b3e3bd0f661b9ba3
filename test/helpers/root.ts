/**
 * The repository's root: the nearest directory above this file that holds package.json. Tests run
 * from the compiled tree (.test-build/, see scripts/build-tests.ts) as well as from the sources, so
 * a fixed number of `../` from import.meta.url would point into the build in one of the two.
 */
import { existsSync } from 'node:fs';
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
