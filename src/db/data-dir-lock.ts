/**
 * The embedded database is one process's: PGlite has no locking of its own, and two processes writing
 * one data directory corrupt it. The server (and the `twofold` CLI while it works) holds
 * `DATA_DIR/twofold.pid`, created exclusively with its pid; another process finding it with a live pid
 * refuses to open the directory. A file left by a process that died (kill -9, a crash) is taken over.
 */
import { randomBytes } from 'node:crypto';
import { linkSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensurePrivateDir } from '../private-dir.ts';

/** The lock file's name in DATA_DIR. */
export const DATA_DIR_LOCK_FILE = 'twofold.pid';

/** The data directory is held by another live process. */
export class DataDirInUseError extends Error {
  override name = 'DataDirInUseError';
  /** `pid` 0: a process is creating its lock file right now (its pid is not written yet). */
  constructor(readonly dataDir: string, readonly pid: number) {
    super(`the embedded database in ${dataDir} is in use by ${pid > 0 ? `process ${pid}` : 'a process starting now'}`);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    // EPERM: it exists but belongs to someone else, which still means in use.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A killed server whose parent has not reaped it yet is a zombie: it still answers kill(pid, 0), but
  // it holds nothing. A restart right after `kill -9` (a supervisor, a crash test) met exactly that.
  return !zombie(pid);
}

/** True when /proc says `pid` has exited and waits to be reaped (Linux; elsewhere false: alive). */
function zombie(pid: number): boolean {
  try {
    // The state follows the parenthesised command name, which may itself hold spaces or parentheses.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return false;
  }
}

/**
 * A lock file that says no pid (empty, or not a number) this long after it was written is left by a
 * crash of another writer; younger, it may be a process's that is writing its pid right now.
 */
export const UNREADABLE_LOCK_STALE_MS = 10_000;

/** Test seam: runs just before a stale lock file is taken away (another process may create one then). */
export interface LockHooks {
  beforeTakeover?: () => void;
}

/**
 * Takes the lock on `dataDir`; returns its release. Throws DataDirInUseError when a live process holds
 * it. Written by hand (rather than with a lock-file package) because it must tell a live server from a
 * killed one at once, by its pid and the zombie check, where mtime-based locks wait out a timeout.
 *
 * Two races are closed here. The file is created with its pid in it (written to a file of our own,
 * then hard-linked to the lock's name, which fails if the name exists): created empty and then
 * written, a second process could read it empty in between, call it stale and take it too. And a
 * stale file is taken away by renaming it to a name of our own and reading what was renamed: when two
 * processes find the same dead pid, the slower one may rename the faster one's new lock instead; it
 * sees a pid other than the dead one and links it back (the same file, so its owner keeps it).
 */
export function lockDataDir(dataDir: string, hooks: LockHooks = {}): () => void {
  ensurePrivateDir(dataDir);
  const file = join(dataDir, DATA_DIR_LOCK_FILE);
  const mine = join(dataDir, `${DATA_DIR_LOCK_FILE}.${process.pid}.${randomBytes(4).toString('hex')}`);
  for (let attempt = 0; attempt < 5; attempt++) {
    if (createWithPid(file, mine)) {
      let released = false;
      return () => {
        if (released) return;
        released = true;
        try {
          if (readFileSync(file, 'utf8').trim() === String(process.pid)) unlinkSync(file);
        } catch {
          // already gone
        }
      };
    }
    let held: { text: string; pid: number; ageMs: number };
    try {
      const text = readFileSync(file, 'utf8').trim();
      held = { text, pid: Number(text), ageMs: Date.now() - statSync(file).mtimeMs };
    } catch {
      continue; // removed meanwhile: try again
    }
    if (held.text === '' || !Number.isInteger(held.pid) || held.pid <= 0) {
      // No pid: a process writing it now, or a crash long ago.
      if (held.ageMs < UNREADABLE_LOCK_STALE_MS) throw new DataDirInUseError(dataDir, 0);
    } else if (held.pid !== process.pid && alive(held.pid)) {
      // Our own pid can only be a file left by an earlier life of this pid (a container's pid 1 restarting).
      throw new DataDirInUseError(dataDir, held.pid);
    }
    hooks.beforeTakeover?.();
    takeAway(file, mine, held.text);
  }
  throw new Error(`could not take the lock ${file}`);
}

/** Creates `file` holding this process's pid, atomically (via `scratch`); false when it exists. */
function createWithPid(file: string, scratch: string): boolean {
  writeFileSync(scratch, `${process.pid}\n`, { mode: 0o644 });
  try {
    linkSync(scratch, file);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    return false;
  } finally {
    unlinkSync(scratch);
  }
}

/** Removes the stale lock `file` that said `staleText`, unless another process's lock has replaced it. */
function takeAway(file: string, scratch: string, staleText: string): void {
  try {
    renameSync(file, scratch);
  } catch {
    return; // gone meanwhile: the next attempt sees what is there
  }
  try {
    const taken = readFileSync(scratch, 'utf8').trim();
    // Not the file judged stale: another process's new lock. Put it back (if the name is still free).
    if (taken !== staleText) linkSync(scratch, file);
  } catch {
    // the name was taken again meanwhile: the next attempt judges that file
  } finally {
    unlinkSync(scratch);
  }
}
