/**
 * The embedded database's lock: a live holder refuses a second process; a dead one's lock is taken over,
 * a zombie's too; a lock being written is not mistaken for a stale one, nor a lock taken over meanwhile.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { DATA_DIR_LOCK_FILE, DataDirInUseError, lockDataDir, UNREADABLE_LOCK_STALE_MS } from '../../src/db/data-dir-lock.ts';

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

test('a lock file without a pid yet (a process between creating and writing it) refuses; one left so long ago is taken over', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'twofold-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, DATA_DIR_LOCK_FILE);
  writeFileSync(file, '');
  assert.throws(() => lockDataDir(dir), (e: unknown) => e instanceof DataDirInUseError && e.pid === 0);
  assert.equal(readFileSync(file, 'utf8'), '', 'the starting process keeps its file');
  const old = new Date(Date.now() - UNREADABLE_LOCK_STALE_MS - 1000);
  utimesSync(file, old, old);
  const release = lockDataDir(dir);
  assert.equal(readFileSync(file, 'utf8').trim(), String(process.pid));
  release();
  assert.ok(!existsSync(file));
  assert.deepEqual(readdirSync(dir), [], 'no scratch file is left behind');
});

test("two processes taking over one stale lock: the slower does not remove the faster one's new lock", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'twofold-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, DATA_DIR_LOCK_FILE);
  // A pid that is not alive: a child that has exited and been reaped.
  const dead = spawn('true');
  await new Promise((resolve) => dead.once('exit', resolve));
  writeFileSync(file, `${dead.pid}\n`);
  // The faster process, alive: it takes the stale lock over between this one's check and its removal.
  const faster = spawn('sleep', ['30']);
  t.after(() => faster.kill('SIGKILL'));
  const beforeTakeover = () => {
    unlinkSync(file);
    writeFileSync(file, `${faster.pid}\n`);
  };
  assert.throws(() => lockDataDir(dir, { beforeTakeover }), (e: unknown) => e instanceof DataDirInUseError && e.pid === faster.pid);
  assert.equal(readFileSync(file, 'utf8').trim(), String(faster.pid), "the faster process's lock is still there");
  assert.deepEqual(readdirSync(dir), [DATA_DIR_LOCK_FILE]);
});
