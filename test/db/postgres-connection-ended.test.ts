/**
 * A PostgreSQL connection ended by the server while a transaction holds it (pg_terminate_backend, a
 * restart, a failover, an idle-session timeout) between two of its statements. The pool listens for
 * errors of idle connections only: the checked-out connection emitted 'error' with no listener, Node
 * threw it, and the whole instance went down with every request in flight. Now the transaction fails
 * (and is rolled back by the server), the broken connection is dropped, and the pool serves on.
 * PostgreSQL only: PGlite has no server to end a connection.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { openPostgres } from '../../src/db/postgres.ts';
import { createTestDatabase } from '../helpers/pg-database.ts';

if (process.env.DATABASE_URL) {
  test('a transaction whose connection the server ends between two statements fails; the process and the pool go on', async (t) => {
    const d = await createTestDatabase('postgres');
    t.after(() => d.cleanup());
    const db = await openPostgres(d.url!, 2);
    t.after(() => db.close());
    const admin = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await admin.connect();
    t.after(() => admin.end());
    await db.query('CREATE TABLE ended_probe (n int)');

    const ended = db.transaction(async (tx) => {
      await tx.query('INSERT INTO ended_probe VALUES (1)');
      const pid = (await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      // The service between two statements (hashing, signing): the server ends the connection.
      await admin.query('SELECT pg_terminate_backend($1)', [pid]);
      for (let i = 0; i < 200; i++) {
        const alive = await admin.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
        if (alive.rows.length === 0) break;
        await sleep(25);
      }
      // Let the client read the server's goodbye while no statement of it runs (what crashed).
      await sleep(200);
      await tx.query('INSERT INTO ended_probe VALUES (2)');
    });
    await assert.rejects(ended);
    // Nothing of it was kept, and the pool still answers (with a new connection).
    assert.deepEqual((await db.query<{ n: number }>('SELECT n FROM ended_probe')).rows, []);
    await db.transaction(async (tx) => tx.query('INSERT INTO ended_probe VALUES (3)'));
    assert.deepEqual((await db.query<{ n: number }>('SELECT n FROM ended_probe')).rows, [{ n: 3 }]);
  });
}
