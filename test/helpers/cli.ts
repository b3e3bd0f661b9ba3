/** Runs the `twofold` command line in a process of its own, as an operator does (test/e2e/cli*.test.ts). */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { runCli } from '../../src/cli/main.ts';
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
      env: { PATH: process.env.PATH ?? '', ...cliEnv(env) },
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

/** The environment of a test's command: cheap password hashing, quiet logs, then `env`. */
function cliEnv(env: Record<string, string>): Record<string, string> {
  return { NODE_ENV: 'test', LOG_LEVEL: 'warn', PASSWORD_HASH_MEMORY_KIB: '1024', PASSWORD_HASH_ITERATIONS: '1', ...env };
}

/**
 * Runs `twofold …` in this process: runCli, which bin/twofold.js calls with the process's argv, env
 * and standard input, then exits with what it returns. A spawned command costs about 2.5 s of CPU
 * (a Node start, the code, PGlite's WebAssembly, the embedded database's start-up); the suites spawn
 * the commands whose process matters (exit codes, standard input, the lock of a live server) and run
 * the rest here. Output lines end in a newline, as console.log's do.
 */
export async function runTwofoldHere(args: string[], env: Record<string, string>, stdin = ''): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, cliEnv(env), (line) => (stdout += `${line}\n`), (line) => (stderr += `${line}\n`), () => stdin);
  return { code, stdout, stderr };
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
