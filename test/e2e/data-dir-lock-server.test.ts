/**
 * The server and its data-directory lock (db/data-dir-lock.ts), as a process: a stop asked for while it
 * waits for another container's lock ends it (nothing is held yet), and a lock whose heartbeat finds
 * another process's token ends it at once (writing on would corrupt the database the two now share).
 * The other container is stood in for by a lock file naming another host, boot and pid namespace,
 * kept fresh by this test.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { DATA_DIR_LOCK_FILE } from '../../src/db/data-dir-lock.ts';
import { freePort } from '../helpers/net.ts';
import { ROOT } from '../helpers/root.ts';

/** The server from its sources (as `npm start` runs it), its output gathered, killed when `t` ends. */
async function server(t: TestContext, dataDir: string): Promise<{ child: ChildProcess; output: () => string; port: number }> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: ROOT,
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dataDir, NODE_ENV: 'development', LOG_LEVEL: 'info', DATABASE_URL: '', REDIS_URL: '', SMTP_URL: '', EVENTS_AMQP_URL: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, output: () => output, port };
}

/** Resolves when `what()` holds, polling; fails after `ms` with `why` and the server's output. */
async function until(what: () => boolean, ms: number, why: string, output: () => string): Promise<void> {
  for (let waited = 0; !what(); waited += 100) {
    if (waited >= ms) assert.fail(`${why}; the server printed:\n${output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

test('a stop asked for while the server waits for another container\'s lock ends it, without serving', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'twofold-lock-wait-'));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const lock = join(dataDir, DATA_DIR_LOCK_FILE);
  writeFileSync(lock, `1\nhost=another-container\nboot=00000000-0000-0000-0000-000000000000\npidns=pid:[1]\ntoken=theirs\n`);
  const beat = setInterval(() => utimesSync(lock, new Date(), new Date()), 1000);
  t.after(() => clearInterval(beat));
  const { child, output } = await server(t, dataDir);
  await until(() => /waiting for it to stop or for its lock to go stale/.test(output()), 60_000, 'the server never said it waits', output);
  child.kill('SIGTERM');
  // Without its handler the signal's default action ended it (and as a container's pid 1 did nothing).
  assert.deepEqual(await exited(child), { code: 0, signal: null }, output());
  assert.match(output(), /stopped while waiting for the data directory lock/);
  assert.match(readFileSync(lock, 'utf8'), /token=theirs/, 'the other container\'s lock is left alone');
});

test('a server whose lock is taken over stops at once', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'twofold-lock-lost-'));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const { child, output, port } = await server(t, dataDir);
  await until(() => /Twofold listening/.test(output()), 60_000, 'the server never started', output);
  assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
  // Another container judged the lock stale and took it: its file, its token.
  writeFileSync(join(dataDir, DATA_DIR_LOCK_FILE), `1\nhost=another-container\nboot=00000000-0000-0000-0000-000000000000\npidns=pid:[1]\ntoken=theirs\n`);
  // The heartbeat (every 5 s) finds it; the server must end rather than write on.
  const end = await Promise.race([exited(child), new Promise<'running'>((r) => setTimeout(() => r('running'), 30_000))]);
  assert.deepEqual(end, { code: 1, signal: null }, output());
  assert.match(output(), /the data directory lock can no longer be trusted; stopping at once/);
});
