/**
 * WEB_CONCURRENCY=2 with the real process on PostgreSQL and Redis: the started process supervises two
 * workers that serve one port; a sign-up on one is a login on either; SIGTERM stops all three.
 * Registered only when DATABASE_URL and REDIS_URL are set (cluster mode needs both): no skipped test.
 * Except the last: workers whose start fails slowly (a database that never answers) stop the cluster too,
 * which needs neither.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { freePort } from '../helpers/net.ts';
import { createTestDatabase } from '../helpers/pg-database.ts';
import { ROOT, SERVER_ARGS } from '../helpers/root.ts';

/** Pids of the live service processes whose parent is `pid` (from /proc; tsx's esbuild is not one). */
function workersOf(pid: number): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        // stat: "pid (comm) state ppid …"; comm may hold spaces, so read after the last ')'.
        const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
        const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return Number(ppid) === pid && state !== 'Z' && readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(SERVER_ARGS.at(-1)!);
      } catch {
        return false;
      }
    })
    .map(Number);
}

if (process.env.DATABASE_URL && process.env.REDIS_URL) {
  test('WEB_CONCURRENCY=2: two workers serve one port on a shared database and stop with the primary', async (t) => {
    const database = await createTestDatabase('postgres');
    t.after(() => database.cleanup());
    const dataDir = mkdtempSync(join(tmpdir(), 'twofold-cluster-'));
    t.after(() => rmSync(dataDir, { recursive: true, force: true }));
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const url = new URL(process.env.DATABASE_URL!);
    url.pathname = `/${(await database.db.query<{ d: string }>('SELECT current_database() AS d')).rows[0]!.d}`;
    const env = {
      PATH: process.env.PATH ?? '',
      NODE_ENV: 'development',
      PORT: String(port),
      HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      DATABASE_URL: url.toString(),
      REDIS_URL: process.env.REDIS_URL!,
      WEB_CONCURRENCY: '2',
      PASSWORD_HASH_MEMORY_KIB: '1024',
      PASSWORD_HASH_ITERATIONS: '1',
      LOG_LEVEL: 'warn',
    };
    const primary = spawn(process.execPath, [...SERVER_ARGS], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    primary.stdout.on('data', (d) => (output += d));
    primary.stderr.on('data', (d) => (output += d));
    const exited = new Promise<number | null>((done) => primary.once('exit', (code) => done(code)));
    t.after(() => {
      if (primary.exitCode === null) primary.kill('SIGKILL');
    });

    // Bounded wait: both workers compile under tsx and migrate (under the advisory lock).
    let workers: number[] = [];
    for (let i = 0; i < 480; i++) {
      if (primary.exitCode !== null) throw new Error(`the primary exited:\n${output}`);
      workers = workersOf(primary.pid!);
      const healthy = await fetch(`${base}/healthz`).then((r) => r.ok, () => false);
      if (healthy && workers.length === 2) break;
      await sleep(250);
    }
    assert.equal(workers.length, 2, `two worker processes under the primary:\n${output}`);
    // The primary only supervises: it must not load the service's modules (app, Fastify, the OpenID
    // provider, WebAuthn, database drivers), which made it as large as a worker.
    const rss = (pid: number) => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
    const [primaryKb, ...workerKb] = [primary.pid!, ...workers].map(rss);
    assert.ok(primaryKb! < 0.7 * Math.min(...workerKb), `primary ${primaryKb} kB resident, workers ${workerKb.join(', ')} kB`);

    const username = `cluster_${Date.now().toString(36)}`;
    const password = 'correct horse battery staple';
    const signup = await fetch(`${base}/api/v1/user`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, email: `${username}@example.com`, password1: password, password2: password }) });
    assert.equal(signup.status, 201, await signup.clone().text());
    // New connections are dealt round-robin: several logins land on both workers, all succeed.
    for (let i = 0; i < 6; i++) {
      const res = await fetch(`${base}/api/v1/auth-jwt/login`, { method: 'POST', headers: { 'content-type': 'application/json', connection: 'close' }, body: JSON.stringify({ username, password }) });
      assert.equal(res.status, 200, await res.clone().text());
    }

    // /metrics from any worker covers both: each scrape counts all six logins (a worker's own count
    // alone read 3, then 3, then …, and counters went backwards between scrapes).
    for (let i = 0; i < 4; i++) {
      const text = await (await fetch(`${base}/metrics`, { headers: { connection: 'close' } })).text();
      const line = text.split('\n').find((l) => l.startsWith('twofold_http_requests_total{') && l.includes('route="/api/v1/auth-jwt/login"') && l.includes('status="200"'));
      assert.equal(line?.split(' ').at(-1), '6', `scrape ${i}: ${line}`);
    }

    primary.kill('SIGTERM');
    assert.equal(await exited, 0, output);
    for (const pid of workers) assert.throws(() => process.kill(pid, 0), 'every worker has exited');
  });

  test('WEB_CONCURRENCY=2: SIGINT to the whole process group (Ctrl-C, systemd) stops every worker gracefully; workers failing at start make the primary exit non-zero', async (t) => {
    const database = await createTestDatabase('postgres');
    t.after(() => database.cleanup());
    const dataDir = mkdtempSync(join(tmpdir(), 'twofold-cluster-'));
    t.after(() => rmSync(dataDir, { recursive: true, force: true }));
    const url = new URL(process.env.DATABASE_URL!);
    url.pathname = `/${(await database.db.query<{ d: string }>('SELECT current_database() AS d')).rows[0]!.d}`;
    const start = async (databaseUrl: string) => {
      const port = await freePort();
      const env = {
        PATH: process.env.PATH ?? '', NODE_ENV: 'development', PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dataDir, DATABASE_URL: databaseUrl,
        REDIS_URL: process.env.REDIS_URL!, WEB_CONCURRENCY: '2', PASSWORD_HASH_MEMORY_KIB: '1024', PASSWORD_HASH_ITERATIONS: '1', LOG_LEVEL: 'info',
      };
      // Its own process group, as a terminal or a systemd unit gives it.
      const primary = spawn(process.execPath, [...SERVER_ARGS], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      const out = { text: '' };
      primary.stdout.on('data', (d) => (out.text += d));
      primary.stderr.on('data', (d) => (out.text += d));
      const exited = new Promise<number | null>((done) => primary.once('exit', (code) => done(code)));
      t.after(() => {
        if (primary.exitCode === null) process.kill(-primary.pid!, 'SIGKILL');
      });
      return { primary, out, exited, base: `http://127.0.0.1:${port}` };
    };

    const ok = await start(url.toString());
    // Both workers listening (each says so once): /healthz answered by one while the other was still
    // starting, and a signal reaching a worker before its handlers exist ends it the default way.
    const listening = () => (ok.out.text.match(/Twofold listening on/g) ?? []).length;
    for (let i = 0; i < 480 && (workersOf(ok.primary.pid!).length < 2 || listening() < 2 || !(await fetch(`${ok.base}/healthz`).then((r) => r.ok, () => false))); i++) {
      if (ok.primary.exitCode !== null) throw new Error(`the primary exited:\n${ok.out.text}`);
      await sleep(250);
    }
    process.kill(-ok.primary.pid!, 'SIGINT');
    assert.equal(await ok.exited, 0, ok.out.text);
    const stopped = ok.out.text.split('\n').filter((l) => l.includes('"worker stopped"')).map((l) => JSON.parse(l) as { exitCode: number | null; signal: string | null });
    assert.deepEqual(stopped.map((w) => [w.exitCode, w.signal]), [[0, null], [0, null]], `each worker ended its graceful stop, none was killed by the second signal:\n${ok.out.text}`);

    // A database that does not exist: both workers fail at start, and a supervisor must see that.
    const missing = new URL(url.toString());
    missing.pathname = '/twofold_test_no_such_database';
    const failing = await start(missing.toString());
    assert.equal(await failing.exited, 1, failing.out.text);
  });
}

test('WEB_CONCURRENCY=2: workers that fail at start-up after a while (a database that never answers) stop the cluster with exit code 1, not a loop of forks', async (t) => {
  // A "PostgreSQL" that accepts connections and never answers: each worker fails only when its
  // connection times out (5 s, after loading its code), later than any fixed "died young" limit.
  const sockets = new Set<Socket>();
  const silent = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const socket of sockets) socket.destroy();
    silent.close();
  });
  const dataDir = mkdtempSync(join(tmpdir(), 'twofold-cluster-'));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const env = {
    PATH: process.env.PATH ?? '', NODE_ENV: 'development', PORT: String(await freePort()), HOST: '127.0.0.1', DATA_DIR: dataDir,
    DATABASE_URL: `postgres://twofold@127.0.0.1:${(silent.address() as { port: number }).port}/twofold`, RATE_LIMIT_DISABLED: 'true', WEB_CONCURRENCY: '2', LOG_LEVEL: 'info',
  };
  const primary = spawn(process.execPath, [...SERVER_ARGS], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  primary.stdout.on('data', (d) => (output += d));
  primary.stderr.on('data', (d) => (output += d));
  t.after(() => {
    if (primary.exitCode === null) process.kill(-primary.pid!, 'SIGKILL');
  });
  // 'close': all of its output read (the primary exits only once its workers have, so it comes).
  const closed = new Promise<void>((done) => primary.once('close', () => done()));
  const failures = () => output.split('\n').filter((l) => l.includes('"worker process exited"')).length;
  // Bounded: the primary exits, or a third worker fails (one forked to replace a failed one).
  for (let i = 0; i < 1200 && primary.exitCode === null && failures() <= 2; i++) await sleep(100);
  assert.ok(failures() <= 2, `workers that failed at start-up were forked again:\n${output}`);
  assert.equal(primary.exitCode, 1, output);
  await closed;
  assert.match(output, /a worker failed during start-up; stopping the cluster/);
});
