/**
 * The embedded database's lock: a live holder refuses a second process; a dead one's lock is taken over,
 * a zombie's too; a lock being written is not mistaken for a stale one, nor a lock taken over meanwhile.
 * A holder in another container or on another machine (its pid means nothing here) is judged by its
 * heartbeat; the release removes only the releaser's own lock.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DATA_DIR_LOCK_FILE, DataDirInUseError, LOCK_STALE_MS, lockDataDir, lockDataDirWaiting, UNREADABLE_LOCK_STALE_MS } from '../../src/db/data-dir-lock.ts';

/** The pid a lock file names: its first line. */
const pidIn = (file: string) => readFileSync(file, 'utf8').split('\n')[0];

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
  assert.equal(pidIn(join(dir, DATA_DIR_LOCK_FILE)), String(process.pid));
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
  assert.equal(pidIn(file), String(process.pid));
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

/** This process's pid scope, as the lock records it. */
const here = {
  host: hostname(),
  boot: readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(),
  pidns: readlinkSync('/proc/self/ns/pid'),
};
/** A lock file as a holder with `scope` writes it. */
const lockFile = (pid: number, scope: typeof here, token: string) => `${pid}\nhost=${scope.host}\nboot=${scope.boot}\npidns=${scope.pidns}\ntoken=${token}\n`;
/** `p`, or a failure after `ms`: the heartbeat thread is unref'd, so without this nothing would keep the test waiting. */
async function within<T>(p: Promise<T>, ms: number): Promise<T> {
  const stop = new AbortController();
  try {
    return await Promise.race([p, sleep(ms, undefined, { signal: stop.signal }).then(() => Promise.reject(new Error(`nothing within ${ms} ms`)))]);
  } finally {
    stop.abort();
  }
}
const ageBy = (file: string, ms: number) => {
  const then = new Date(Date.now() - ms);
  utimesSync(file, then, then);
};

test('a lock held in another container or machine refuses while its heartbeat is fresh, even when its pid is ours (pid 1 in both containers); a stale one is taken over', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'twofold-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, DATA_DIR_LOCK_FILE);
  const elsewhere = [
    { ...here, host: 'another-container' },
    { ...here, boot: '00000000-0000-4000-8000-000000000000' },
    { ...here, pidns: 'pid:[1]' },
  ];
  for (const scope of elsewhere) {
    // Its pid is ours, and alive (it is us): neither may be read as "an earlier life of our own pid".
    const theirs = lockFile(process.pid, scope, 'theirs');
    writeFileSync(file, theirs);
    ageBy(file, LOCK_STALE_MS - 5_000);
    assert.throws(
      () => lockDataDir(dir),
      (e: unknown) => e instanceof DataDirInUseError && e.pid === process.pid && e.invisible?.host === scope.host && /on host .* another container or on another machine/.test(e.message),
      JSON.stringify(scope),
    );
    assert.equal(readFileSync(file, 'utf8'), theirs, 'the holder keeps its file');
    // No heartbeat for LOCK_STALE_MS: the holder died (a crashed container, a machine gone).
    ageBy(file, LOCK_STALE_MS + 1_000);
    const release = lockDataDir(dir);
    const mine = readFileSync(file, 'utf8');
    assert.equal(pidIn(file), String(process.pid));
    assert.ok(mine.includes(`host=${here.host}\n`) && !mine.includes('token=theirs\n'), mine);
    release();
    assert.deepEqual(readdirSync(dir), []);
  }
  // In our own namespace our own pid is an earlier life of it: taken over at once, heartbeat or not.
  writeFileSync(file, lockFile(process.pid, here, 'earlier-life'));
  lockDataDir(dir)();
  assert.deepEqual(readdirSync(dir), []);
});

test("the holder's heartbeat keeps its lock file fresh; it stops at a lock that is no longer its own, and the release leaves another holder's lock alone", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'twofold-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, DATA_DIR_LOCK_FILE);
  let lost: (why: string) => void = () => {};
  const lostNow = new Promise<string>((resolve) => (lost = resolve));
  const release = lockDataDir(dir, { heartbeatMs: 20, onLost: (why) => lost(why) });
  t.after(release);
  // As though it had not beaten for a long time: the heartbeat brings it back (bounded by the test's timeout).
  ageBy(file, LOCK_STALE_MS * 2);
  const old = statSync(file).mtimeMs;
  for (let i = 0; i < 500 && statSync(file).mtimeMs === old; i++) await sleep(10);
  assert.ok(Date.now() - statSync(file).mtimeMs < LOCK_STALE_MS, 'the heartbeat refreshed the lock');

  // Taken over meanwhile by another process with the same pid (another container's pid 1, say).
  const theirs = lockFile(process.pid, here, 'theirs');
  writeFileSync(`${file}.new`, theirs);
  ageBy(`${file}.new`, 60_000);
  const theirMtime = statSync(`${file}.new`).mtimeMs;
  // rename: the heartbeat never sees a missing or half-written file
  renameSync(`${file}.new`, file);
  assert.equal(await within(lostNow, 20_000), 'lock file removed, taken over or not refreshed');
  assert.equal(statSync(file).mtimeMs, theirMtime, "another process's lock is never refreshed");
  release();
  assert.equal(readFileSync(file, 'utf8'), theirs, "the release removes only this process's own lock");
});

test('the server waits for a lock held in another container until it goes stale, and refuses one whose heartbeat goes on', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'twofold-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, DATA_DIR_LOCK_FILE);
  const staleMs = 1_500;
  const elsewhere = { ...here, host: 'previous-run' };

  // A crashed holder: its heartbeat stopped a moment ago.
  writeFileSync(file, lockFile(1, elsewhere, 'crashed'));
  const waits: DataDirInUseError[] = [];
  const release = await lockDataDirWaiting(dir, (e) => waits.push(e), { staleMs });
  assert.equal(waits.length, 1, 'it said once that it waits');
  assert.equal(waits[0]!.invisible?.host, 'previous-run');
  assert.equal(pidIn(file), String(process.pid));
  release();

  // A live one: its heartbeat goes on (here, this test refreshing its file).
  writeFileSync(file, lockFile(1, elsewhere, 'alive'));
  const beat = setInterval(() => {
    const now = new Date();
    utimesSync(file, now, now);
  }, 100);
  t.after(() => clearInterval(beat));
  await assert.rejects(lockDataDirWaiting(dir, () => {}, { staleMs }), (e: unknown) => e instanceof DataDirInUseError && e.invisible?.host === 'previous-run');
  clearInterval(beat);
  assert.ok(readFileSync(file, 'utf8').includes('token=alive\n'));

  // A holder whose pid is visible here is refused at once, without waiting.
  const live = spawn('sleep', ['30']);
  t.after(() => live.kill('SIGKILL'));
  writeFileSync(file, lockFile(live.pid!, here, 'visible'));
  let waited = false;
  await assert.rejects(lockDataDirWaiting(dir, () => (waited = true), { staleMs }), (e: unknown) => e instanceof DataDirInUseError && e.pid === live.pid && !e.invisible);
  assert.equal(waited, false);
});
