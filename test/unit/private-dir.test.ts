/** DATA_DIR is this user's only: PGlite writes its files (the WAL with password hashes) as 0666. */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { lockDataDir } from '../../src/db/data-dir-lock.ts';
import { openPglite } from '../../src/db/pglite.ts';
import { loadConfig } from '../../src/config.ts';
import { loadSecrets } from '../../src/secrets.ts';

const modeOf = (dir: string) => statSync(dir).mode & 0o777;

test('the data directory is created 0700, and one found open to others is closed, whichever opens it first', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'twofold-private-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  // Created fresh, by each of the three that may come first (the lock, the secrets, the database).
  const release = lockDataDir(join(root, 'a', 'data'));
  release();
  assert.equal(modeOf(join(root, 'a', 'data')), 0o700);
  await loadSecrets(loadConfig({ DATA_DIR: join(root, 'b') }));
  assert.equal(modeOf(join(root, 'b')), 0o700);
  const db = await openPglite(join(root, 'c', 'pglite'));
  await db.close();
  assert.equal(modeOf(join(root, 'c', 'pglite')), 0o700);
  // An existing directory readable by everyone (the umask's 0755, or 0777 by hand) is closed.
  for (const open of [0o755, 0o777]) {
    const dir = join(root, `open-${open.toString(8)}`);
    mkdirSync(dir);
    chmodSync(dir, open);
    lockDataDir(dir)();
    assert.equal(modeOf(dir), 0o700, open.toString(8));
  }
});
