/**
 * What a CLI command works with: the configuration from the environment (DATABASE_URL, DATA_DIR, the
 * secrets), the database — refused while a server holds the embedded one — and the service's deps.
 */
import pino from 'pino';
import type { Config } from '../config.ts';
import { DataDirInUseError, describeInvisible, lockDataDir } from '../db/data-dir-lock.ts';
import type { Database } from '../db/database.ts';
import { pendingMigrations } from '../db/migrate.ts';
import { openDatabase } from '../db/open.ts';
import type { Deps } from '../deps.ts';
import type { MailTransport } from '../mail/types.ts';
import { createLimiter } from '../security/create-limiter.ts';
import { openDeps, type OpenDepsOptions } from '../open-deps.ts';

/** A failure to report in one line, with the process's exit code. */
export class CliError extends Error {
  override name = 'CliError';
  constructor(message: string, readonly exitCode = 1) {
    super(message);
  }
}

/** Exit code when the embedded database is in use by a running server. */
export const EXIT_DATA_DIR_IN_USE = 3;

/** An open database (locked when embedded) and how to let it go. */
export interface CliDatabase {
  config: Config;
  db: Database;
  close(): Promise<void>;
}

/** Opens the configured database; on the embedded one, only while no server holds DATA_DIR. */
export async function openCliDatabase(config: Config): Promise<CliDatabase> {
  let release = () => {};
  if (!config.databaseUrl) {
    try {
      release = lockDataDir(config.dataDir);
    } catch (e) {
      if (!(e instanceof DataDirInUseError)) throw e;
      throw new CliError(
        `The embedded database in ${config.dataDir} is in use by ${e.pid > 0 ? `a running Twofold server (pid ${e.pid}${e.invisible ? ` ${describeInvisible(e.invisible)}` : ''})` : 'a Twofold process starting now'}.\n` +
        'Stop the server first (the embedded database serves one process at a time), or point DATABASE_URL at PostgreSQL.',
        EXIT_DATA_DIR_IN_USE,
      );
    }
  }
  let db: Database;
  try {
    db = await openDatabase(config);
  } catch (e) {
    release();
    throw e;
  }
  return {
    config,
    db,
    async close() {
      await db.close();
      release();
    },
  };
}

/** Mail the CLI causes (a verification link) waits in the outbox for the server's worker. */
const outboxOnly: MailTransport = {
  name: 'outbox-only',
  async send() {
    throw new Error('the CLI does not deliver mail');
  },
  async close() {},
};

/** The service's deps over an open database; refuses a database that still needs `twofold migrate`, and (see openDeps) another deployment's TOKEN_HASH_KEY. */
export async function cliDeps(open: CliDatabase, options: OpenDepsOptions = {}): Promise<Deps> {
  const pending = await pendingMigrations(open.db);
  if (pending.length) throw new CliError(`The database needs migrations (${pending.join(', ')}): run \`twofold migrate\` first.`);
  const { config, db } = open;
  const logger = pino({ level: 'warn' }, pino.destination(2));
  const limiter = createLimiter(config, { logger });
  try {
    return await openDeps(config, db, logger, { limiter, mailTransport: outboxOnly }, options);
  } catch (e) {
    // Refused (a wrong key): a Redis client left open would keep the command from ending.
    await limiter.close().catch(() => {});
    throw e;
  }
}
