/**
 * The embedded database is one process's: PGlite has no locking of its own, and two processes writing
 * one data directory corrupt it. The server (and the `twofold` CLI while it works) holds
 * `DATA_DIR/twofold.pid`, created exclusively with its pid; another process finding it with a live pid
 * refuses to open the directory. A file left by a process that died (kill -9, a crash) is taken over.
 */
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensurePrivateDir } from '../private-dir.ts';

/** The lock file's name in DATA_DIR. */
export const DATA_DIR_LOCK_FILE = 'twofold.pid';

/** The data directory is held by another live process. */
export class DataDirInUseError extends Error {
  override name = 'DataDirInUseError';
  constructor(readonly dataDir: string, readonly pid: number) {
    super(`the embedded database in ${dataDir} is in use by process ${pid}`);
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

/** Takes the lock on `dataDir`; returns its release. Throws DataDirInUseError when a live process holds it. */
export function lockDataDir(dataDir: string): () => void {
  ensurePrivateDir(dataDir);
  const file = join(dataDir, DATA_DIR_LOCK_FILE);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      writeFileSync(file, `${process.pid}\n`, { flag: 'wx', mode: 0o644 });
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
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let pid: number;
    try {
      pid = Number(readFileSync(file, 'utf8').trim());
    } catch {
      continue; // removed meanwhile: try again
    }
    // Our own pid can only be a file left by an earlier life of this pid (a container's pid 1 restarting).
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) throw new DataDirInUseError(dataDir, pid);
    try {
      unlinkSync(file); // stale
    } catch {
      // another process took it over first; the next attempt sees its file
    }
  }
  throw new Error(`could not take the lock ${file}`);
}
