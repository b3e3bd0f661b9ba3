/**
 * Instances starting together on a new PostgreSQL database migrate it once, all of them starting:
 * the migration table used to be created before the advisory lock, and PostgreSQL fails concurrent
 * CREATE TABLE IF NOT EXISTS of one name (3 of 4 instances failed to start). Needs DATABASE_URL;
 * without it this file registers no test.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import pg from 'pg';
import { migrate, migrationFiles } from '../../src/db/migrate.ts';
import type { Database } from '../../src/db/database.ts';
import { openPostgres } from '../../src/db/postgres.ts';

const ADMIN_URL: string | undefined = process.env.DATABASE_URL;

if (ADMIN_URL) {
  test('four instances migrating a new database at once: all succeed, every migration applied once [postgres]', async (t) => {
    const admin = new pg.Client({ connectionString: ADMIN_URL });
    await admin.connect();
    t.after(() => admin.end());
    for (let round = 0; round < 3; round++) {
      const name = `twofold_test_migrate_${randomBytes(5).toString('hex')}`;
      await admin.query(`CREATE DATABASE ${name}`);
      const url: URL = new URL(ADMIN_URL!);
      url.pathname = `/${name}`;
      const dbs: Database[] = await Promise.all(Array.from({ length: 4 }, () => openPostgres(url.toString(), 2)));
      try {
        const results = await Promise.allSettled(dbs.map((db) => migrate(db)));
        assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled'], String(results.map((r) => (r.status === 'rejected' ? (r.reason as Error).message : '')).filter(Boolean)));
        const applied = results.flatMap((r) => (r.status === 'fulfilled' ? r.value : []));
        assert.deepEqual(applied.sort(), migrationFiles().sort(), 'each migration applied by exactly one instance');
      } finally {
        await Promise.all(dbs.map((db) => db.close()));
        await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      }
    }
  });
}
