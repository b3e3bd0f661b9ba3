/** Holding a request at an exact point, so a race happens in the order a test needs. */
import type { TestContext } from 'node:test';
import pg from 'pg';
import { buildTestApp, createTestClock, type TestApp } from './app.ts';
import { createTestDatabase, type TestDatabase } from './pg-database.ts';

/** Runs `hold` once, just before the next transaction the app opens starts (then steps aside). */
export function beforeNextTransaction(ta: TestApp, hold: () => Promise<void>): { fired: () => boolean } {
  const db = ta.deps.db as { transaction: typeof ta.deps.db.transaction };
  const real = db.transaction.bind(ta.deps.db);
  let held = false;
  db.transaction = (async (fn: Parameters<typeof real>[0]) => {
    if (!held) {
      held = true;
      db.transaction = real;
      await hold();
    }
    return real(fn);
  }) as typeof real;
  return { fired: () => held };
}

/**
 * A test app on a fresh PostgreSQL database of its own (DATABASE_URL), a second connection to hold
 * locks with (a race's other side run by hand, statement by statement), and a third that watches
 * (never inside a transaction, where pg_stat_activity would be a snapshot).
 */
export async function appWithSecondConnection(t: TestContext): Promise<{ ta: TestApp; td: TestDatabase; other: pg.Client; monitor: pg.Client }> {
  const td = await createTestDatabase('postgres');
  const [other, monitor] = [new pg.Client({ connectionString: td.url }), new pg.Client({ connectionString: td.url })];
  await Promise.all([other.connect(), monitor.connect()]);
  t.after(() => Promise.all([other.end(), monitor.end()]));
  t.after(() => td.cleanup());
  return { ta: await buildTestApp(t, td.db, { clock: createTestClock(new Date()) }), td, other, monitor };
}

/**
 * Polls until at least `n` backends of the database wait for a lock; the server says so, no sleep
 * stands in for it. `monitor` must not be inside a transaction (the view would be a snapshot there).
 */
export async function untilWaitingForLocks(monitor: pg.Client, n: number, what: string): Promise<void> {
  for (let i = 0; ; i++) {
    const waiting = await monitor.query(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
    if (waiting.rows.length >= n) return;
    if (i >= 500) throw new Error(`${what}: never waited for the held lock`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
