/** Runs the `twofold` command line in a process of its own, as an operator does (test/e2e/cli*.test.ts). */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { Database } from '../../src/db/database.ts';
import { openPglite } from '../../src/db/pglite.ts';
import { ROOT } from './root.ts';

/**
 * The command an operator runs: bin/twofold.js. Compiled (npm test), the copy beside the compiled
 * tree, which runs it as in a built image (dist/); from the sources, the checkout's, through tsx.
 */
export const TWOFOLD_BIN = import.meta.url.endsWith('.js') ? join(ROOT, '.test-build/bin/twofold.js') : join(ROOT, 'bin/twofold.js');

/** How a command ended. */
export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `twofold …` with cheap password hashing, `env` on top (it must bring TOTP_ENCRYPTION_KEY and
 * the database), and `stdin`; resolves when the process exits.
 */
export function runTwofold(args: string[], env: Record<string, string>, stdin = ''): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TWOFOLD_BIN, ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', NODE_ENV: 'test', LOG_LEVEL: 'warn', PASSWORD_HASH_MEMORY_KIB: '1024', PASSWORD_HASH_ITERATIONS: '1', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

/**
 * Runs `fn` on the database the CLI works on, between two commands: the PostgreSQL test database, or
 * the embedded one in `dataDir`, opened for `fn` and closed again (the CLI needs it to itself).
 */
export async function peekCliDatabase<T>(dataDir: string, pg: Database | undefined, fn: (db: Database) => Promise<T>): Promise<T> {
  if (pg) return fn(pg);
  const db = await openPglite(join(dataDir, 'pglite'));
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}
