/** The embedded database's lock: a live holder refuses a second process; a dead one's lock is taken over, a zombie's too. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { DATA_DIR_LOCK_FILE, DataDirInUseError, lockDataDir } from '../../src/db/data-dir-lock.ts';

function stateOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return undefined;
  }
}

test('a lock held by a live process refuses; one left by a process that was killed but not yet reaped (a zombie) is taken over', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'twofold-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // A live holder: a sleeping child of this test.
  const live = spawn('sleep', ['30']);
  t.after(() => live.kill('SIGKILL'));
  writeFileSync(join(dir, DATA_DIR_LOCK_FILE), `${live.pid}\n`);
  assert.throws(() => lockDataDir(dir), (e: unknown) => e instanceof DataDirInUseError && e.pid === live.pid);

  // A zombie: `sleep 0` started in the background by a shell that then becomes `sleep 30`, which never
  // reaps it. Its pid answers kill(pid, 0) like a live process; it is what a server killed with -9 is
  // until its parent waits for it.
  const parent = spawn('sh', ['-c', 'sleep 0 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.after(() => parent.kill('SIGKILL'));
  const zombiePid = Number(await new Promise<string>((resolve) => parent.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim()))));
  // Polls until the child has exited (the test's timeout bounds it).
  while (stateOf(zombiePid) !== 'Z') await new Promise((r) => setTimeout(r, 10));
  writeFileSync(join(dir, DATA_DIR_LOCK_FILE), `${zombiePid}\n`);
  const release = lockDataDir(dir);
  assert.equal(readFileSync(join(dir, DATA_DIR_LOCK_FILE), 'utf8').trim(), String(process.pid));
  release();
});
