/**
 * The heartbeat of a held data-directory lock (see data-dir-lock.ts): the lock file's mtime, refreshed
 * every few seconds while the holder lives, is all a process in another container or on another machine
 * can see of it. It beats in a worker thread: PGlite's queries run on the main thread, and a long one (a
 * migration on a large table) must not stop the heartbeat and let another container take the lock.
 */
import { Worker } from 'node:worker_threads';

/** Exit code of the heartbeat thread when the lock file is gone, holds another process's token, or could not be refreshed three times in a row. */
const LOST = 3;

// Plain JavaScript evaluated in the thread (no loader there: it must not depend on tsx or on dist/).
const BEAT = `
const { workerData: { file, token, intervalMs, lost } } = require('node:worker_threads');
const fs = require('node:fs');
// Beats that failed in a row: a passing error (a network file system) is tried again at the next beat,
// but a few in a row mean the others see the lock go stale (a volume refusing utimes said nothing).
let failed = 0;
const miss = () => {
  if (++failed >= 3) process.exit(lost);
};
setInterval(() => {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if (e.code === 'ENOENT') process.exit(lost);
    return miss();
  }
  // Another process's lock now (ours was judged stale and taken over): never refresh it.
  if (!text.split('\\n').includes('token=' + token)) process.exit(lost);
  const now = new Date();
  try {
    fs.utimesSync(file, now, now);
    failed = 0;
  } catch {
    miss();
  }
}, intervalMs);
`;

/** Why the heartbeat stopped while the lock was still held. */
export type HeartbeatLoss = 'lock file removed, taken over or not refreshed' | 'heartbeat thread failed';

/**
 * Starts refreshing `file`'s mtime every `intervalMs` while it holds `token=<token>`; returns its stop.
 * `onLost` hears of a heartbeat that stopped on its own: the lock can no longer be trusted.
 */
export function startHeartbeat(file: string, token: string, intervalMs: number, onLost: (why: HeartbeatLoss) => void): () => void {
  let stopped = false;
  // execArgv []: the thread runs only the code above, without the process's loaders (tsx).
  const worker = new Worker(BEAT, { eval: true, execArgv: [], workerData: { file, token, intervalMs, lost: LOST } });
  // The lock must not keep a finished process (a CLI command) alive.
  worker.unref();
  // An 'exit' listener keeps nothing alive ('message' would): the thread reports by its exit code.
  worker.on('error', () => {});
  worker.on('exit', (code) => {
    if (!stopped) onLost(code === LOST ? 'lock file removed, taken over or not refreshed' : 'heartbeat thread failed');
  });
  return () => {
    if (stopped) return;
    stopped = true;
    void worker.terminate();
  };
}
