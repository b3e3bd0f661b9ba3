/**
 * The `twofold` command line as an operator runs it: spawned processes (bin/twofold.js) against the
 * embedded database in a data directory and, with DATABASE_URL, against a fresh PostgreSQL database.
 * The commands whose process matters (exit codes, standard input, a live server's lock, the first
 * migration) are spawned; the others run the same runCli in this process (runTwofoldHere), which
 * saves a process start and a database start-up each.
 * What the commands did is checked through the service itself (a test app on the same database):
 * the first admin logs in with the admin role, a rotated key signs after its activation.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { loadConfig } from '../../src/config.ts';
import { SecretBox } from '../../src/crypto/secret-box.ts';
import { TokenHasher } from '../../src/crypto/token-hash.ts';
import type { Database } from '../../src/db/database.ts';
import { openPglite } from '../../src/db/pglite.ts';
import { createLimiter } from '../../src/security/create-limiter.ts';
import { buildTestApp, createTestClock, login, type TestApp } from '../helpers/app.ts';
import { createTestDatabase } from '../helpers/pg-database.ts';
import { peekCliDatabase, runTwofold, runTwofoldHere, type CliRun } from '../helpers/cli.ts';

const BOX_KEY = randomBytes(32);
/** The token-hash key of the commands and of the apps beside them: login names (the limiter's account names) are digests under it. */
const HASH_KEY = randomBytes(32);
/** Runs `twofold …` in its own process with `env` (and `stdin`); resolves when it exits. */
function twofold(args: string[], env: Record<string, string>, stdin = ''): Promise<CliRun> {
  return runTwofold(args, { TOTP_ENCRYPTION_KEY: `test:${BOX_KEY.toString('base64')}`, TOKEN_HASH_KEY: HASH_KEY.toString('base64'), ...env }, stdin);
}
/** The same command run in this process (what bin/twofold.js calls), for commands whose process does not matter. */
function here(args: string[], env: Record<string, string>, stdin = ''): Promise<CliRun> {
  return runTwofoldHere(args, { TOTP_ENCRYPTION_KEY: `test:${BOX_KEY.toString('base64')}`, TOKEN_HASH_KEY: HASH_KEY.toString('base64'), ...env }, stdin);
}

function ok(r: CliRun, what: string): string {
  assert.equal(r.code, 0, `${what} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** The engines: the embedded database always, PostgreSQL when DATABASE_URL is set. */
const engines = process.env.DATABASE_URL ? ['pglite', 'postgres'] as const : ['pglite'] as const;

for (const kind of engines) {
  describe(`twofold CLI [${kind}]`, () => {
    // One database for the suite (a fresh embedded one costs an initdb): `migrate` is the first test's
    // first step, and the tests use names of their own.
    const dataDir = mkdtempSync(join(tmpdir(), 'twofold-cli-'));
    const env: Record<string, string> = { DATA_DIR: dataDir };
    let pgDatabase: Awaited<ReturnType<typeof createTestDatabase>> | undefined;
    before(async () => {
      if (kind !== 'postgres') return;
      pgDatabase = await createTestDatabase('postgres');
      // A database without the schema: `migrate` must make it.
      await pgDatabase.db.query('DROP SCHEMA public CASCADE');
      await pgDatabase.db.query('CREATE SCHEMA public');
      env.DATABASE_URL = pgDatabase.url!;
    });
    after(async () => {
      await pgDatabase?.cleanup();
      rmSync(dataDir, { recursive: true, force: true });
    });

    /** The same database in this process, once the CLI is done with it (the embedded one is closed again when the test ends). */
    async function openDb(t: TestContext): Promise<Database> {
      if (pgDatabase) return pgDatabase.db;
      const db = await openPglite(join(dataDir, 'pglite'));
      t.after(() => db.close());
      return db;
    }

    /** Runs `fn` on the CLI's database between two commands. */
    const peek = <T>(fn: (db: Database) => Promise<T>): Promise<T> => peekCliDatabase(dataDir, pgDatabase?.db, fn);

    /** A test app on the CLI's database, sealing with the CLI's TOTP_ENCRYPTION_KEY. */
    async function app(t: TestContext, extra: { env?: Record<string, string>; clock?: ReturnType<typeof createTestClock>; redis?: boolean } = {}): Promise<TestApp> {
      const appEnv = { ...extra.env, ...(extra.redis ? { REDIS_URL: process.env.REDIS_URL! } : {}) };
      const limiter = extra.redis ? createLimiter(loadConfig({ NODE_ENV: 'test', ...appEnv })) : undefined;
      if (limiter) t.after(() => limiter.close());
      return buildTestApp(t, await openDb(t), { env: appEnv, secretBox: new SecretBox([{ kid: 'test', key: BOX_KEY }]), tokenHasher: new TokenHasher(HASH_KEY), ...(extra.clock ? { clock: extra.clock } : {}), ...(limiter ? { limiter } : {}) });
    }

    test('migrate, then the first admin: users create and users promote; the admin logs in with the role', async (t) => {
      const unmigrated = await twofold(['users', 'promote', 'nobody', 'admin'], env);
      assert.equal(unmigrated.code, 1);
      assert.match(unmigrated.stderr, /needs migrations .*run `twofold migrate` first/);
      assert.match(ok(await twofold(['migrate'], env), 'migrate'), /^applied: 0001_init\.sql/);
      assert.match(ok(await here(['migrate'], env), 'migrate again'), /database is up to date/);

      const created = ok(await twofold(['users', 'create', 'Root_Admin', 'root@example.com', '--verified', '--password-stdin'], env, 'a long and unusual passphrase 9\n'), 'users create');
      assert.match(created, /created user Root_Admin \([0-9a-f-]{36}\), e-mail verified/);
      assert.doesNotMatch(created, /password/, 'a password given on stdin is never echoed');
      const generated = ok(await here(['users', 'create', 'second', 'second@example.com', '--role', 'support'], env), 'users create (generated password)');
      const password = /password \(shown once\): (\S+)/.exec(generated)?.[1];
      assert.ok(password && password.length >= 20);
      const promoted = ok(await here(['users', 'promote', 'root_admin', 'admin'], env), 'users promote');
      assert.match(promoted, /Root_Admin: roles admin \(effective at the next login/);

      // Refusals: bad role name, unknown user, taken name, weak password — exit ≠ 0, one line, no stack
      // (the taken name and the weak password from a process of their own: what the operator's shell
      // sees, the service's logger included).
      const bad = await here(['users', 'promote', 'root_admin', 'Admin!'], env);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /not a role name.*\[validation_failed\]/);
      assert.equal((await here(['users', 'promote', 'ghost', 'admin'], env)).code, 1);
      const taken = await twofold(['users', 'create', 'root_admin', 'other@example.com'], env);
      assert.equal(taken.code, 1);
      assert.match(taken.stderr, /username_taken/);
      const weak = await twofold(['users', 'create', 'weakling', 'weak@example.com', '--password-stdin'], env, 'password\n');
      assert.equal(weak.code, 1);
      assert.match(weak.stderr, /validation_failed/);
      // The CLI skips the route schemas: names a login could never find (non-ASCII, spaces) are refused here too.
      const refusedNames: Array<[string, string]> = [['müller', 'mueller@example.com'], ['İlker', 'ilker@example.com'], ['has space', 'space@example.com'], ['okname', 'ö@example.com']];
      for (const [name, email] of refusedNames) {
        const refused = await here(['users', 'create', name, email], env);
        assert.equal(refused.code, 1, `${name} ${email}`);
        assert.match(refused.stderr, /validation_failed/, `${name} ${email}`);
      }
      assert.doesNotMatch(weak.stderr + taken.stderr, /\n\s+at /, 'no stack trace');
      for (const r of [weak, taken]) assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      const usage = await twofold(['users', 'frobnicate'], env);
      assert.equal(usage.code, 2);
      assert.match(usage.stderr, /usage: twofold/);

      const entries = await peek((db) => db.query<{ type: string; actor_kind: string; data: { changes?: { roles?: unknown } } }>(
        "SELECT a.type, a.actor_kind, a.data FROM audit_log a JOIN users u ON u.id = a.user_id WHERE u.username = 'Root_Admin' ORDER BY a.id"));
      assert.deepEqual(entries.rows.map((r) => [r.type, r.actor_kind]), [['user.created', 'system'], ['email.verified', 'system'], ['user.updated', 'system']]);
      assert.deepEqual(entries.rows[2]!.data.changes?.roles, { from: [], to: ['admin'] });
      const ta = await app(t);
      const res = await login(ta.app, { username: 'root@example.com', password: 'a long and unusual passphrase 9' });
      assert.equal(res.statusCode, 200, res.body);
      assert.deepEqual(decodeJwt(res.json().access_token).roles, ['admin']);
      const second = await login(ta.app, { username: 'second', password: password! });
      assert.equal(second.statusCode, 200, second.body);
      assert.deepEqual(decodeJwt(second.json().access_token).roles, ['support']);
    });

    test('keys list and keys rotate: a new key in state next that signs after the activation delay', async (t) => {
      // (the first test migrated the database)
      const first = JSON.parse(ok(await here(['keys', 'list', '--json'], env), 'keys list')) as { keys: Array<{ kid: string; state: string }> };
      assert.deepEqual(first.keys.map((k) => k.state), ['current']);
      const rotated = JSON.parse(ok(await here(['keys', 'rotate', '--json'], env), 'keys rotate')) as { kid: string; state: string; activates_at: string };
      assert.equal(rotated.state, 'next');
      const table = ok(await here(['keys', 'list'], env), 'keys list (table)');
      assert.match(table, new RegExp(`^${rotated.kid}\\s+next\\s`, 'm'));
      assert.match(table, new RegExp(`^${first.keys[0]!.kid}\\s+current\\s`, 'm'));

      const audited = await peek((db) => db.query<{ actor_kind: string; user_agent: string; data: { action: string; kid: string } }>("SELECT actor_kind, user_agent, data FROM audit_log WHERE type = 'admin.action'"));
      assert.deepEqual(audited.rows.map((r) => [r.actor_kind, r.user_agent, r.data.action, r.data.kid]), [['system', 'twofold CLI', 'keys.rotate', rotated.kid]]);
      ok(await here(['users', 'create', 'keyuser', 'keyuser@example.com', '--password-stdin'], env, 'a long and unusual passphrase 9\n'), 'users create');
      const clock = createTestClock(new Date());
      const ta = await app(t, { clock });
      const tokenBefore = (await login(ta.app, { username: 'keyuser', password: 'a long and unusual passphrase 9' })).json();
      assert.equal(decodeProtectedHeader(tokenBefore.access_token).kid, first.keys[0]!.kid);
      clock.set(rotated.activates_at);
      const tokenAfter = (await login(ta.app, { username: 'keyuser', password: 'a long and unusual passphrase 9' })).json();
      assert.equal(decodeProtectedHeader(tokenAfter.access_token).kid, rotated.kid);
      const info = await ta.app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: { authorization: `Bearer ${tokenBefore.access_token}` } });
      assert.equal(info.statusCode, 200, 'the token signed before the rotation still works');
    });

    test('users unlock clears a lockout', async (t) => {
      const password = 'a long and unusual passphrase 9';
      // A name of this run's own: Redis outlives the database, and keeps the counts of earlier runs.
      const name = `locked_${randomBytes(4).toString('hex')}`;
      ok(await here(['users', 'create', name, `${name}@example.com`, '--password-stdin'], env, `${password}\n`), 'users create');
      const redis = kind === 'postgres' && Boolean(process.env.REDIS_URL);
      if (!redis) {
        if (kind === 'pglite') {
          // The embedded database: the server is stopped while the CLI runs, and its in-memory counters with it.
          assert.match(ok(await here(['users', 'unlock', name], env), 'users unlock'), /not locked/);
        } else {
          const r = await here(['users', 'unlock', name], env);
          assert.equal(r.code, 1);
          assert.match(r.stderr, /Without REDIS_URL .*POST \/api\/v1\/admin\/users\/[0-9a-f-]{36}\/unlock/s);
        }
        return;
      }
      // PostgreSQL and Redis: the counters are shared, so the CLI can clear what the server counted.
      const ta = await app(t, { env: { LOCKOUT_MAX_FAILURES: '2' }, redis: true });
      // An address of this test's own: Redis is shared, and 127.0.0.1 carries every other test's failures.
      const remoteAddress = `10.${randomBytes(3).join('.')}`;
      const attempt = (pw: string) => ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login', payload: { username: name, password: pw }, remoteAddress });
      for (let i = 0; i < 2; i++) assert.equal((await attempt('wrong password here')).statusCode, 401);
      assert.equal((await attempt(password)).statusCode, 429, 'locked');
      assert.match(ok(await twofold(['users', 'unlock', name], { ...env, REDIS_URL: process.env.REDIS_URL! }), 'users unlock'), new RegExp(`${name}: unlocked`));
      assert.equal((await attempt(password)).statusCode, 200, 'unlocked');
    });

    if (kind === 'pglite') {
      test('on the embedded database in use by a server, every database command refuses (exit 3) and says to stop it', async () => {
        // A live process holds the directory (here: this test process, as a server would).
        writeFileSync(join(dataDir, 'twofold.pid'), `${process.pid}\n`);
        for (const args of [['migrate'], ['keys', 'list'], ['users', 'promote', 'a', 'admin']]) {
          const r = await twofold(args, env);
          assert.equal(r.code, 3, args.join(' '));
          assert.match(r.stderr, new RegExp(`in use by a running Twofold server \\(pid ${process.pid}\\)[\\s\\S]*Stop the server first`));
        }
        // A lock file left by a process that is gone is taken over.
        const dead = spawn(process.execPath, ['-e', '']);
        await new Promise((r) => dead.on('exit', r));
        writeFileSync(join(dataDir, 'twofold.pid'), `${dead.pid}\n`);
        assert.match(ok(await twofold(['migrate'], env), 'migrate after a stale lock'), /up to date/);
      });

      test('hash-calibrate prints argon2id settings the server accepts', async () => {
        const out = ok(await twofold(['hash-calibrate', '--target-ms', '5', '--memory-kib', '1024'], {}), 'hash-calibrate');
        const settings = Object.fromEntries([...out.matchAll(/^(PASSWORD_HASH_[A-Z_]+)=(\d+)$/gm)].map((m) => [m[1]!, m[2]!]));
        assert.deepEqual(Object.keys(settings).sort(), ['PASSWORD_HASH_ITERATIONS', 'PASSWORD_HASH_MEMORY_KIB', 'PASSWORD_HASH_PARALLELISM']);
        assert.equal(settings.PASSWORD_HASH_MEMORY_KIB, '1024');
        const config = loadConfig(settings);
        assert.ok(config.passwordHash.iterations >= 1);
        const bad = await here(['hash-calibrate', '--target-ms', 'soon'], {});
        assert.equal(bad.code, 2);
        // Settings the server refuses at start are refused here, not printed.
        for (const args of [['--parallelism', '17'], ['--memory-kib', '512']]) {
          const refused = await here(['hash-calibrate', '--target-ms', '5', ...args], {});
          assert.equal(refused.code, 2, args.join(' '));
          assert.match(refused.stderr, /must be between/, args.join(' '));
        }
      });
    }
  });
}
