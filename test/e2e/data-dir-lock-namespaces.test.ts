/**
 * The embedded database's lock across pid namespaces, as containers have them: a holder that is pid 1
 * in a namespace of its own (a server's container) and, on the same DATA_DIR, the `twofold` CLI and a
 * second server, each pid 1 in another (a `docker run … twofold users create`, a rolling update's new
 * pod). Each sees the lock file name pid 1, its own pid, and cannot see the holder's process: the CLI
 * must still refuse (exit 3) and leave the lock alone, the server must wait for it, and start once the
 * holder lets go. Registered where `unshare` can make pid namespaces (root on Linux): no skipped test;
 * test/unit/data-dir-lock.test.ts covers the same rules with hand-written lock files everywhere.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { TWOFOLD_BIN } from '../helpers/cli.ts';
import { freePort } from '../helpers/net.ts';
import { ROOT, SERVER_ARGS } from '../helpers/root.ts';

/** Node arguments that run test/helpers/lock-holder.ts: compiled under npm test, through tsx from the sources. */
const LOCK_HOLDER_ARGS = import.meta.url.endsWith('.js') ? [join(ROOT, '.test-build/test/helpers/lock-holder.js')] : ['--import', 'tsx', join(ROOT, 'test/helpers/lock-holder.ts')];
/** A command as pid 1 of a new pid namespace, killed with `unshare` when the test ends. */
const UNSHARE = ['--pid', '--fork', '--mount-proc', '--kill-child'];

function inNamespace(t: TestContext, args: string[], env: Record<string, string>): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = spawn('unshare', [...UNSHARE, process.execPath, ...args], { cwd: ROOT, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let text = '';
  child.stdout!.on('data', (d) => (text += d));
  child.stderr!.on('data', (d) => (text += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, output: () => text, exited };
}

/** Polls `ready` every 100 ms, at most `tries` times; fails with `what` and the output otherwise. */
async function until(ready: () => boolean | Promise<boolean>, tries: number, what: string, output: () => string): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await ready()) return;
    await sleep(100);
  }
  throw new Error(`${what}:\n${output()}`);
}

const canUnshare = process.platform === 'linux' && spawnSync('unshare', [...UNSHARE, 'true']).status === 0;

if (canUnshare) {
  test('a holder that is pid 1 of its own namespace keeps the lock from the CLI and a server that are pid 1 of theirs', async (t) => {
    const dataDir = mkdtempSync(join(tmpdir(), 'twofold-lock-ns-'));
    t.after(() => rmSync(dataDir, { recursive: true, force: true }));
    const lockFile = join(dataDir, 'twofold.pid');
    const holder = inNamespace(t, [...LOCK_HOLDER_ARGS, dataDir], {});
    await until(() => holder.output().includes('locked'), 600, 'the holder did not take the lock', holder.output);
    assert.match(holder.output(), /^locked 1$/m, 'the holder is pid 1 of its namespace');
    const held = readFileSync(lockFile, 'utf8');

    // The CLI, pid 1 too: the lock names its own pid, of a process it cannot see.
    const env = { NODE_ENV: 'test', LOG_LEVEL: 'warn', DATA_DIR: dataDir, TOTP_ENCRYPTION_KEY: `test:${Buffer.alloc(32, 7).toString('base64')}` };
    const cli = inNamespace(t, [TWOFOLD_BIN, 'keys', 'list'], env);
    assert.equal(await cli.exited, 3, cli.output());
    assert.match(cli.output(), /in use by a running Twofold server \(pid 1 on host .*another container or on another machine[\s\S]*Stop the server first/);
    assert.equal(readFileSync(lockFile, 'utf8'), held, "the holder's lock is still there, untouched");

    // A server, pid 1 too: it waits rather than open the database beside the holder.
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const server = inNamespace(t, [...SERVER_ARGS], {
      ...env, NODE_ENV: 'development', PORT: String(port), HOST: '127.0.0.1', DATABASE_URL: '', SMTP_URL: '', REDIS_URL: '', PASSWORD_HASH_MEMORY_KIB: '1024', PASSWORD_HASH_ITERATIONS: '1',
    });
    const healthy = () => fetch(`${base}/healthz`).then((r) => r.ok, () => false);
    await until(async () => server.output().includes('waiting for it to stop') || (await healthy()) || server.child.exitCode !== null, 1200, 'the server neither waited nor started', server.output);
    assert.match(server.output(), /in use by process 1 on host .*waiting for it to stop/, 'the server waits for the holder');
    assert.equal(await healthy(), false, 'the server does not serve while another process holds the database');
    assert.equal(readFileSync(lockFile, 'utf8'), held);

    // The holder stops (releasing its lock): the waiting server takes it and starts.
    holder.child.stdin!.end();
    assert.equal(await holder.exited, 0, holder.output());
    await until(healthy, 1200, 'the server did not start once the lock was free', server.output);
    const taken = readFileSync(lockFile, 'utf8');
    assert.notEqual(taken, held);
    assert.equal(taken.split('\n')[0], '1', "the lock is now the server's");
  });
}
