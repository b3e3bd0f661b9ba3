/** Opens the configured database: PostgreSQL when DATABASE_URL is set, else PGlite in DATA_DIR. */
import { join } from 'node:path';
import type { Config } from '../config.ts';
import type { Database } from './database.ts';

export async function openDatabase(config: Config): Promise<Database> {
  // Each driver is imported only when used: PGlite's module alone holds ~40 MB a server never needs.
  if (config.databaseUrl) {
    const { openPostgres } = await import('./postgres.ts');
    return openPostgres(config.databaseUrl, config.databasePoolSize);
  }
  const { openPglite } = await import('./pglite.ts');
  return openPglite(join(config.dataDir, 'pglite'));
}
