/**
 * DATA_DIR holds the embedded database (password hashes, e-mail addresses, in its files and its WAL)
 * and, in development, the generated keys. PGlite writes its files as 0666, so only the directory's
 * own mode keeps other local users out: it is created 0700, and one found open to group or others
 * (made by hand, or by an older version with the umask's 0755) is closed at start.
 */
import { chmodSync, mkdirSync, statSync } from 'node:fs';

/** Creates `dir` (with its parents) for this user only, or closes an existing one to group and others. */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const mode = statSync(dir).mode & 0o777;
  if ((mode & 0o077) === 0) return;
  try {
    chmodSync(dir, mode & 0o700);
  } catch {
    // Not ours to change (a mount owned by another user): its owner decides who may read it.
  }
}
