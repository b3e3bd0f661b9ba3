/** Holding a request at an exact point, so a race happens in the order a test needs. */
import type { TestApp } from './app.ts';

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
