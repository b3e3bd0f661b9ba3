/**
 * The embedded database is one process's: PGlite has no locking of its own, and two processes writing
 * one data directory corrupt it. The server (and the `twofold` CLI while it works) holds
 * `DATA_DIR/twofold.pid`, created exclusively; another process finding it held refuses to open the
 * directory. A file left by a process that died (kill -9, a crash) is taken over.
 *
 * "Held" is judged two ways. A pid means something only in the pid namespace that wrote it: in a
 * container the server is usually pid 1, and so is a second container (a `docker run … twofold users
 * create` on the same volume, the new pod of a rolling update), which sees neither the first's pid nor
 * its process. So the file also records the holder's hostname, the kernel's boot id and its pid
 * namespace. When all three are ours, the pid decides (alive, not a zombie: held; our own pid: a file
 * left by an earlier life of this pid). Otherwise the holder is invisible from here, and the file's
 * mtime decides: the holder refreshes it every HEARTBEAT_MS, and a lock not refreshed for LOCK_STALE_MS
 * is abandoned (a crashed container; the same container restarted, which has a new pid namespace).
 */
import { randomBytes } from 'node:crypto';
import { linkSync, readFileSync, readlinkSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ensurePrivateDir } from '../private-dir.ts';
import { startHeartbeat, type HeartbeatLoss } from './data-dir-heartbeat.ts';

/** The lock file's name in DATA_DIR. */
export const DATA_DIR_LOCK_FILE = 'twofold.pid';

/** How often the holder refreshes its lock file's mtime. */
const HEARTBEAT_MS = 5_000;

/**
 * A lock whose holder is invisible from here (another host, boot or pid namespace) and whose file was
 * not refreshed for this long is abandoned: six missed heartbeats, room for a loaded machine and some
 * clock difference between machines sharing a network volume.
 */
export const LOCK_STALE_MS = 30_000;

/**
 * A lock file that says no pid (empty, or not a number) this long after it was written is left by a
 * crash of another writer; younger, it may be a process's that is writing its pid right now.
 */
export const UNREADABLE_LOCK_STALE_MS = 10_000;

/** A holder this process cannot check by its pid: where it runs, and how long ago it refreshed the lock. */
export interface InvisibleHolder {
  host: string;
  heartbeatAgeMs: number;
}

/** The data directory is held by another live process. */
export class DataDirInUseError extends Error {
  override name = 'DataDirInUseError';
  /**
   * `pid` 0: a process is creating its lock file right now (its pid is not written yet). `invisible`:
   * the holder runs in another container or on another machine, and only its heartbeat shows it alive.
   */
  constructor(readonly dataDir: string, readonly pid: number, readonly invisible?: InvisibleHolder) {
    super(`the embedded database in ${dataDir} is in use by ${pid > 0 ? `process ${pid}` : 'a process starting now'}` + (invisible ? ` ${describeInvisible(invisible)}` : ''));
  }
}

/** "on host h, in another container or machine …; its lock was refreshed n s ago …": for messages. */
export function describeInvisible(h: InvisibleHolder): string {
  const ago = Math.max(0, Math.round(h.heartbeatAgeMs / 1000));
  return `on host ${h.host}, in another container or on another machine sharing this directory; its lock was refreshed ${ago} s ago and is taken over ${LOCK_STALE_MS / 1000} s after its last refresh`;
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

/** Where a pid means something: this host, this boot of its kernel, this pid namespace (Linux; elsewhere ''). */
interface PidScope {
  host: string;
  boot: string;
  pidns: string;
}

function ourScope(): PidScope {
  const read = (f: () => string) => {
    try {
      return f().trim();
    } catch {
      return '';
    }
  };
  return { host: hostname(), boot: read(() => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8')), pidns: read(() => readlinkSync('/proc/self/ns/pid')) };
}

/** A lock file's text: the pid on the first line (as before), then `key=value` lines. */
function lockText(scope: PidScope, token: string): string {
  return `${process.pid}\nhost=${scope.host}\nboot=${scope.boot}\npidns=${scope.pidns}\ntoken=${token}\n`;
}

/** What a lock file says: a pid, and (from this version on) where it is valid; `fields` undefined for a bare pid. */
function parseLock(text: string): { pid: number; fields?: Map<string, string> } {
  const [first = '', ...rest] = text.trim().split('\n');
  const pid = /^\d+$/.test(first.trim()) ? Number(first) : NaN;
  if (rest.length === 0) return { pid };
  return { pid, fields: new Map(rest.map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)])) };
}

/** Options for lockDataDir; the defaults are the production ones. */
export interface LockOptions {
  /** Test seam: runs just before a stale lock file is taken away (another process may create one then). */
  beforeTakeover?: () => void;
  heartbeatMs?: number;
  staleMs?: number;
  /** Hears that the heartbeat stopped while the lock was held; by default a line on stderr. */
  onLost?: (why: HeartbeatLoss) => void;
}

/**
 * Takes the lock on `dataDir`; returns its release. Throws DataDirInUseError when a live process holds
 * it. Written by hand (rather than with a lock-file package) because it must tell a live server from a
 * killed one at once where it can, by its pid and the zombie check, where mtime-based locks always wait
 * out a timeout; only a holder that its pid cannot vouch for is judged by its heartbeat.
 *
 * Two races are closed here. The file is created with its contents in it (written to a file of our
 * own, then hard-linked to the lock's name, which fails if the name exists): created empty and then
 * written, a second process could read it empty in between, call it stale and take it too. And a
 * stale file is taken away by renaming it to a name of our own and reading what was renamed: when two
 * processes find the same dead holder, the slower one may rename the faster one's new lock instead; it
 * sees other contents than the stale ones and links it back (the same file, so its owner keeps it).
 * The release removes the file only while it holds our random token: a pid alone (1 in every
 * container) would let one process remove another's lock.
 */
export function lockDataDir(dataDir: string, options: LockOptions = {}): () => void {
  ensurePrivateDir(dataDir);
  const staleMs = options.staleMs ?? LOCK_STALE_MS;
  const file = join(dataDir, DATA_DIR_LOCK_FILE);
  const mine = join(dataDir, `${DATA_DIR_LOCK_FILE}.${process.pid}.${randomBytes(4).toString('hex')}`);
  const scope = ourScope();
  const token = randomBytes(16).toString('hex');
  const text = lockText(scope, token);
  for (let attempt = 0; attempt < 5; attempt++) {
    if (createWith(file, mine, text)) {
      const onLost = options.onLost ?? ((why) => console.error(`twofold: the lock ${file} can no longer be trusted (${why}); another process may be writing the embedded database`));
      let stopHeartbeat: () => void;
      try {
        stopHeartbeat = startHeartbeat(file, token, options.heartbeatMs ?? HEARTBEAT_MS, onLost);
      } catch (e) {
        unlinkSync(file); // no heartbeat, no lock: others would take it over in LOCK_STALE_MS
        throw e;
      }
      let released = false;
      return () => {
        if (released) return;
        released = true;
        stopHeartbeat();
        try {
          if (readFileSync(file, 'utf8') === text) unlinkSync(file);
        } catch {
          // already gone
        }
      };
    }
    let held: { text: string; ageMs: number };
    try {
      held = { text: readFileSync(file, 'utf8'), ageMs: Date.now() - statSync(file).mtimeMs };
    } catch {
      continue; // removed meanwhile: try again
    }
    const { pid, fields } = parseLock(held.text);
    if (!Number.isInteger(pid) || pid <= 0) {
      // No pid: a process writing it now, or a crash long ago.
      if (held.ageMs < UNREADABLE_LOCK_STALE_MS) throw new DataDirInUseError(dataDir, 0);
    } else if (fields && (fields.get('host') !== scope.host || fields.get('boot') !== scope.boot || fields.get('pidns') !== scope.pidns)) {
      // Its pid means nothing here (and may even be ours: pid 1 in both containers). Only its heartbeat
      // shows it alive; a clock ahead of ours (negative age) counts as fresh.
      if (held.ageMs < staleMs) throw new DataDirInUseError(dataDir, pid, { host: fields.get('host') || '(unknown)', heartbeatAgeMs: held.ageMs });
    } else if (pid !== process.pid && alive(pid)) {
      // Our own pid in our own namespace can only be a file left by an earlier life of this pid. (A bare
      // pid, from a version before the heartbeat, is judged so too: it said nothing more.)
      throw new DataDirInUseError(dataDir, pid);
    }
    options.beforeTakeover?.();
    takeAway(file, mine, held.text);
  }
  throw new Error(`could not take the lock ${file}`);
}

/** How often a server waiting for an invisible holder's lock looks at it again. */
const WAIT_POLL_MS = 1_000;

/**
 * lockDataDir for the server's start-up: a lock held by a process it cannot see is waited for until its
 * heartbeat goes stale (then taken over) or the staleness has passed with it still fresh (then refused).
 * A container restarted after a crash meets its own earlier run's lock so: it starts once that lock has
 * aged, instead of failing until a restart policy's back-off happens to outlast it. `onWait` hears once
 * that it waits. A holder whose pid is visible here still refuses at once.
 */
export async function lockDataDirWaiting(dataDir: string, onWait: (e: DataDirInUseError) => void, options: LockOptions = {}): Promise<() => void> {
  // A dead holder's file is stale at the latest LOCK_STALE_MS from now; a live one's is never.
  const deadline = Date.now() + (options.staleMs ?? LOCK_STALE_MS) + WAIT_POLL_MS;
  let told = false;
  for (;;) {
    try {
      return lockDataDir(dataDir, options);
    } catch (e) {
      if (!(e instanceof DataDirInUseError) || !e.invisible || Date.now() >= deadline) throw e;
      if (!told) onWait(e);
      told = true;
    }
    await sleep(Math.max(0, Math.min(WAIT_POLL_MS, deadline - Date.now())));
  }
}

/** Creates `file` holding `text`, atomically (via `scratch`); false when it exists. */
function createWith(file: string, scratch: string, text: string): boolean {
  writeFileSync(scratch, text, { mode: 0o644 });
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
    const taken = readFileSync(scratch, 'utf8');
    // Not the file judged stale: another process's new lock. Put it back (if the name is still free).
    if (taken !== staleText) linkSync(scratch, file);
  } catch {
    // the name was taken again meanwhile: the next attempt judges that file
  } finally {
    unlinkSync(scratch);
  }
}
