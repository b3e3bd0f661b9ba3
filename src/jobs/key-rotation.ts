/**
 * The key job: every minute, the scheduled rotation (JWT_KEY_ROTATION_INTERVAL, when set) and the
 * deletion of retired keys. Every instance runs it; the key lock makes each step happen once.
 */
import type { KeyRing } from '../crypto/jwt.ts';
import { SYSTEM_CONTEXT } from '../services/audit/record.ts';
import { auditRotation, pruneRetiredKeys, rotateIfDue } from '../services/signing-keys/rotate.ts';
import type { SigningKeyDeps } from '../services/signing-keys/open.ts';

/** How often the job looks (real time); the rotation interval is at least an hour. */
const TICK_MS = 60_000;

export interface KeyJobOptions {
  deps: SigningKeyDeps;
  ring: KeyRing;
}

/** Runs the key steps once (tests call this instead of waiting for the timer). */
export async function runKeyJobOnce(opts: KeyJobOptions): Promise<void> {
  // The schedule is the service acting on its own: audited with the system as actor.
  await rotateIfDue(opts.deps, { ring: opts.ring, onCreated: auditRotation(SYSTEM_CONTEXT, opts.deps.clock, 'keys.rotate_scheduled') });
  const pruned = await pruneRetiredKeys(opts.deps);
  if (pruned.length) opts.deps.logger.info({ kids: pruned }, 'retired signing keys deleted');
}

/** Starts the timer; returns a function that stops it. A failed tick is logged and tried again next time. */
export function startKeyJob(opts: KeyJobOptions): () => void {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    runKeyJobOnce(opts)
      .catch((err: unknown) => opts.deps.logger.error({ err }, 'key job failed'))
      .finally(() => {
        running = false;
      });
  }, TICK_MS);
  timer.unref();
  return () => clearInterval(timer);
}
