/**
 * TOKEN_HASH_KEY against the database (services/deployment-checks.ts): the first server to open it
 * records the key's check value (commands only compare); a server or a command with another key is refused in one line
 * (exit 2) instead of serving with digests no other instance shares; `twofold token-hash-key adopt`
 * accepts a replaced key. On the embedded database in a data directory and, with DATABASE_URL, on a
 * fresh PostgreSQL database.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import pino from 'pino';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { TokenHasher } from '../../src/crypto/token-hash.ts';
import type { Database } from '../../src/db/database.ts';
import type { MailTransport } from '../../src/mail/types.ts';
import { openDeps } from '../../src/open-deps.ts';
import { createMemoryLimiter } from '../../src/security/limiter-memory.ts';
import { tokenHashKeyCheckValue } from '../../src/services/deployment-checks.ts';
import { peekCliDatabase, runTwofold, runTwofoldHere, type CliRun } from '../helpers/cli.ts';
import { freePort } from '../helpers/net.ts';
import { createTestDatabase, type DatabaseKind } from '../helpers/pg-database.ts';
import { ROOT, SERVER_ARGS } from '../helpers/root.ts';

const BOX = `test:${randomBytes(32).toString('base64')}`;
const KEY_A = randomBytes(32).toString('base64');
const KEY_B = randomBytes(32).toString('base64');

function keys(hashKey: string): Record<string, string> {
  return { TOTP_ENCRYPTION_KEY: BOX, TOKEN_HASH_KEY: hashKey };
}

function ok(r: CliRun, what: string): string {
  assert.equal(r.code, 0, `${what} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** The refusal: one line naming the setting, saying what to do in both cases. */
function assertRefusal(stderr: string, prefix: string): void {
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line:\n${stderr}`);
  assert.match(lines[0]!, new RegExp(`^twofold: ${prefix}: TOKEN_HASH_KEY differs from the key this database was set up with \\(other instances, or an earlier start, use another one\\)`));
  assert.match(lines[0]!, /Give this instance the same TOKEN_HASH_KEY as the others/);
  assert.match(lines[0]!, /replaced on purpose \(every backup code and pending verification link stops working, and every OpenID Connect session and token ends\).*`twofold token-hash-key adopt`/);
}

const engines: readonly DatabaseKind[] = process.env.DATABASE_URL ? ['pglite', 'postgres'] : ['pglite'];

for (const kind of engines) {
  describe(`TOKEN_HASH_KEY checked against the database [${kind}]`, () => {
    // One database for the suite's processes; the tests run in order and each says what it leaves.
    const dataDir = mkdtempSync(join(tmpdir(), 'twofold-hash-key-'));
    const env: Record<string, string> = { DATA_DIR: dataDir, DATABASE_URL: '', REDIS_URL: '' };
    let pg: Awaited<ReturnType<typeof createTestDatabase>> | undefined;
    before(async () => {
      if (kind === 'postgres') {
        pg = await createTestDatabase('postgres');
        env.DATABASE_URL = pg.url!;
      }
      ok(await runTwofoldHere(['migrate'], env), 'migrate');
    });
    after(async () => {
      await pg?.cleanup();
      rmSync(dataDir, { recursive: true, force: true });
    });
    const peek = <T>(fn: (db: Database) => Promise<T>): Promise<T> => peekCliDatabase(dataDir, pg?.db, fn);

    /**
     * The server (as `node src/server.ts`, one process: its exit is the end of everything it held) with
     * `hashKey`; resolves with its exit code once it ends by itself, or with `serving` once /healthz
     * answers (then stopped with SIGTERM and waited for, so the embedded database is free again).
     */
    async function startServer(t: TestContext, hashKey: string): Promise<{ code: number | null | 'serving'; stdout: string; stderr: string }> {
      const port = await freePort();
      const child = spawn(process.execPath, [...SERVER_ARGS], {
        cwd: ROOT,
        env: {
          PATH: process.env.PATH ?? '', NODE_ENV: 'development', PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', SMTP_URL: '',
          PASSWORD_HASH_MEMORY_KIB: '1024', PASSWORD_HASH_ITERATIONS: '1', ...env, ...keys(hashKey),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      t.after(() => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
      let ended = false;
      void exited.then(() => (ended = true));
      // Bounded: a cold tsx compile plus PGlite's start on 2 busy cores stays well within 60 s.
      for (let i = 0; i < 240 && !ended; i++) {
        const serving = await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false);
        if (serving) {
          child.kill('SIGTERM');
          assert.equal(await exited, 0, `${stdout}\n${stderr}`);
          return { code: 'serving', stdout, stderr };
        }
        await new Promise((r) => setTimeout(r, 250));
      }
      return { code: await exited, stdout, stderr };
    }

    test('a command records no key: one run with another key before any server start leaves the first server free to record its own', async () => {
      // A shell without the deployment's key, on a database no server has opened yet (a fresh one, or
      // between `twofold migrate` and the first start): the command runs, and records nothing.
      ok(await runTwofoldHere(['keys', 'list'], { ...env, ...keys(KEY_B) }), 'keys list (key B, nothing recorded yet)');
      const none = await peek((db) => db.query("SELECT 1 FROM deployment_checks WHERE name = 'token_hash_key'"));
      assert.equal(none.rows.length, 0, 'a command recorded its key');
    });

    test('the first server records its TOKEN_HASH_KEY; one started with another key is refused (one line, exit 2)', async (t) => {
      const first = await startServer(t, KEY_A);
      assert.equal(first.code, 'serving', `the first start with key A was refused:\n${first.stdout}\n${first.stderr}`);

      const refused = await startServer(t, KEY_B);
      assert.equal(refused.code, 2, `the start with key B was not refused:\n${refused.stdout}\n${refused.stderr}`);
      assertRefusal(refused.stderr, 'key error');
    });

    test('a command with another TOKEN_HASH_KEY is refused (one line, exit 2) and does nothing', async () => {
      const refused = await runTwofold(['users', 'create', 'split_brain', 'split@example.com'], { ...env, ...keys(KEY_B) });
      assert.equal(refused.code, 2, `${refused.stdout}\n${refused.stderr}`);
      assertRefusal(refused.stderr, 'configuration error');
      const users = await peek((db) => db.query("SELECT 1 FROM users WHERE username = 'split_brain'"));
      assert.equal(users.rows.length, 0);
    });

    test('token-hash-key adopt makes the new key the accepted one and the old one refused; audited once', async () => {
      // Without TOKEN_HASH_KEY it would adopt a key generated into this shell's DATA_DIR: refused, nothing changed.
      const before = await peek((db) => db.query<{ value: string }>("SELECT value FROM deployment_checks WHERE name = 'token_hash_key'"));
      const unset = await runTwofoldHere(['token-hash-key', 'adopt'], { ...env, TOTP_ENCRYPTION_KEY: BOX, NODE_ENV: 'development' });
      assert.equal(unset.code, 2, `${unset.stdout}\n${unset.stderr}`);
      assert.match(unset.stderr, /set TOKEN_HASH_KEY to the key to adopt/);
      const after = await peek((db) => db.query<{ value: string }>("SELECT value FROM deployment_checks WHERE name = 'token_hash_key'"));
      assert.deepEqual(after.rows, before.rows);

      assert.match(ok(await runTwofoldHere(['token-hash-key', 'adopt'], { ...env, ...keys(KEY_B) }), 'adopt key B'), /TOKEN_HASH_KEY adopted/);
      ok(await runTwofoldHere(['keys', 'list'], { ...env, ...keys(KEY_B) }), 'keys list (key B, adopted)');
      const old = await runTwofoldHere(['keys', 'list'], { ...env, ...keys(KEY_A) });
      assert.equal(old.code, 2, `${old.stdout}\n${old.stderr}`);
      assertRefusal(old.stderr, 'configuration error');
      // Again with the same key: nothing to do, nothing recorded.
      assert.match(ok(await runTwofoldHere(['token-hash-key', 'adopt'], { ...env, ...keys(KEY_B) }), 'adopt key B again'), /already the key this database accepts; nothing changed/);

      const audit = await peek((db) => db.query<{ actor_kind: string; user_agent: string; data: Record<string, unknown> }>(
        "SELECT actor_kind, user_agent, data FROM audit_log WHERE type = 'admin.action' AND data->>'action' = 'token_hash_key.adopt'"));
      assert.deepEqual(audit.rows.map((r) => [r.actor_kind, r.user_agent, r.data.replaced]), [['system', 'twofold CLI', true]]);
      const stored = await peek((db) => db.query<{ value: string }>("SELECT value FROM deployment_checks WHERE name = 'token_hash_key'"));
      assert.equal(stored.rows[0]!.value, tokenHashKeyCheckValue(new TokenHasher(Buffer.from(KEY_B, 'base64'))));
      assert.ok(!stored.rows[0]!.value.includes(Buffer.from(KEY_B, 'base64').toString('hex')), 'the key itself is not stored');
    });
  });
}

const noMail: MailTransport = {
  name: 'none',
  async send() {
    throw new Error('no mail in this test');
  },
  async close() {},
};

/** openDeps as an instance's start runs it (recording its key), on `db` with `hashKey`. */
async function open(t: TestContext, db: Database, hashKey: string): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'twofold-hash-key-open-'));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const config = loadConfig({ NODE_ENV: 'test', DATA_DIR: dataDir, ...keys(hashKey) });
  const limiter = createMemoryLimiter(config);
  t.after(() => limiter.close());
  await openDeps(config, db, pino({ level: 'silent' }), { limiter, mailTransport: noMail }, { tokenHashKey: 'record' });
}

for (const kind of engines) {
  test(`instances opening a new database at once [${kind}]: equal keys both start; different keys, exactly one key is recorded and the other refused`, async (t) => {
    const same = await createTestDatabase(kind);
    t.after(() => same.cleanup());
    await Promise.all([open(t, same.db, KEY_A), open(t, await same.connectAgain(), KEY_A)]);
    await open(t, same.db, KEY_A);

    const split = await createTestDatabase(kind);
    t.after(() => split.cleanup());
    const results = await Promise.allSettled([open(t, split.db, KEY_A), open(t, await split.connectAgain(), KEY_B)]);
    const started = results.flatMap((r, i) => (r.status === 'fulfilled' ? [[KEY_A, KEY_B][i]!] : []));
    assert.equal(started.length, 1, `exactly one starts: ${JSON.stringify(results.map((r) => r.status))}`);
    const refusal = results.find((r) => r.status === 'rejected')!.reason as unknown;
    assert.ok(refusal instanceof ConfigError && /^TOKEN_HASH_KEY differs/.test(refusal.message), String(refusal));
    const stored = await split.db.query<{ value: string }>("SELECT value FROM deployment_checks WHERE name = 'token_hash_key'");
    assert.equal(stored.rows[0]!.value, tokenHashKeyCheckValue(new TokenHasher(Buffer.from(started[0]!, 'base64'))));
  });
}
