/**
 * MAX_SESSIONS_PER_USER: a login beyond the cap ends the user's oldest live sessions (reason
 * `session_limit`, audited like every revocation), a bounded number per login; simultaneous logins
 * and a password change racing them end without a 500 or a deadlock; and the session listings are
 * bounded, always with the caller's own session. On PGlite and, with DATABASE_URL, PostgreSQL.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { totpCodeAt } from '../../src/crypto/totp.ts';
import type pg from 'pg';
import { buildTestApp, createTestClock, createUser, describeWithApp, enableTotp, login, loginTokens, nextTotpStep, type TestApp, type TestUser } from '../helpers/app.ts';
import { ADMIN_ENV, adminCall, auditRowsOf } from '../helpers/admin.ts';
import { appWithSecondConnection } from '../helpers/holds.ts';
import { get, loginMfa, mfaChallenge, post } from '../helpers/factors.ts';
import { addPasskey, signInWithPasskey } from '../helpers/passkeys.ts';

const NEW_PW = 'plum orchard under winter rain';
/** SESSION_TRIM_BATCH of services/sessions-limit.ts: sessions one login ends at most (not imported, so this file runs against the code before the cap). */
const SESSION_TRIM_BATCH = 50;

/** The session id (`sid`) inside a token. */
function sidOf(token: string): string {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).sid;
}

/** Ids of the user's live sessions (not revoked, not expired), newest first. */
async function liveIds(ta: TestApp, user: TestUser): Promise<string[]> {
  const r = await ta.deps.db.query<{ id: string }>('SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 ORDER BY created_at DESC', [user.uuid, ta.clock()]);
  return r.rows.map((s) => s.id);
}

/** The sids of the user's session.revoked audit entries with `reason`. */
async function revokedFor(ta: TestApp, user: TestUser, reason: string): Promise<string[]> {
  return (await auditRowsOf(ta, user.uuid)).filter((r) => r.type === 'session.revoked' && r.data.reason === reason).map((r) => String(r.data.sid));
}

/** `count` live sessions of `user` created by SQL before the cap existed, `firstAgeSeconds` ago and younger, one second apart. */
async function insertLegacySessions(ta: TestApp, user: TestUser, count: number, firstAgeSeconds: number): Promise<void> {
  await ta.deps.db.query(
    `INSERT INTO sessions (id, user_id, current_jti, amr, aal, created_at, last_used_at, expires_at)
     SELECT gen_random_uuid(), $1, gen_random_uuid(), '{pwd}', 'aal1', t, t, t + interval '60 days'
     FROM (SELECT $2::timestamptz - make_interval(secs => $3 - g) AS t FROM generate_series(0, $4 - 1) g) x`,
    [user.uuid, ta.clock(), firstAgeSeconds, count],
  );
}

test('MAX_SESSIONS_PER_USER: 100 by default, a whole number from 1 to 1000', () => {
  assert.equal(loadConfig({}).maxSessionsPerUser, 100);
  assert.equal(loadConfig({ MAX_SESSIONS_PER_USER: '1' }).maxSessionsPerUser, 1);
  assert.equal(loadConfig({ MAX_SESSIONS_PER_USER: '1000' }).maxSessionsPerUser, 1000);
  for (const bad of ['0', '1001', '10000', '-1', 'many', '2.5']) {
    assert.throws(() => loadConfig({ MAX_SESSIONS_PER_USER: bad }), (e: unknown) => e instanceof ConfigError && e.message.startsWith('MAX_SESSIONS_PER_USER must'), bad);
  }
});

describeWithApp('session limit', (suite) => {
  test('five logins at a cap of 3: the two oldest end (session_limit), their tokens are refused, the newest three are listed', async (t) => {
    const ta = await suite.build(t, { env: { MAX_SESSIONS_PER_USER: '3' } });
    const user = await createUser(ta.app);
    const pairs: Array<{ access_token: string; refresh_token: string }> = [];
    for (let i = 0; i < 5; i++) {
      pairs.push(await loginTokens(ta.app, user));
      ta.clock.advance(60);
    }
    const sids = pairs.map((p) => sidOf(p.access_token));
    assert.deepEqual(await liveIds(ta, user), sids.slice(2).reverse(), 'the newest three are live');
    const ended = await ta.deps.db.query<{ id: string; revoked_reason: string }>('SELECT id, revoked_reason FROM sessions WHERE user_id = $1 AND revoked_at IS NOT NULL', [user.uuid]);
    assert.deepEqual(ended.rows.map((s) => s.id).sort(), sids.slice(0, 2).sort());
    assert.ok(ended.rows.every((s) => s.revoked_reason === 'session_limit'));
    assert.deepEqual((await revokedFor(ta, user, 'session_limit')).sort(), sids.slice(0, 2).sort(), 'each audited as session.revoked');

    for (const old of pairs.slice(0, 2)) {
      const refreshed = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: old.refresh_token } });
      assert.equal(refreshed.statusCode, 401, refreshed.body);
      assert.equal(refreshed.json().code, 'invalid_token');
      assert.equal((await get(ta, '/api/v1/auth-jwt/user-info', old.access_token)).statusCode, 401);
    }
    const newest = pairs[4]!;
    assert.equal((await get(ta, '/api/v1/auth-jwt/user-info', newest.access_token)).statusCode, 200);
    const listed = (await get(ta, '/api/v1/auth-jwt/sessions', newest.access_token)).json() as Array<{ id: string; current: boolean }>;
    assert.deepEqual(listed.map((s) => s.id), sids.slice(2).reverse());
    assert.deepEqual(listed.map((s) => s.current), [true, false, false]);
  });

  test('the two-step login and the passkey sign-in keep the cap too', async (t) => {
    const ta = await suite.build(t, { env: { MAX_SESSIONS_PER_USER: '2' } });
    const user = await createUser(ta.app);
    const { secret } = await enableTotp(ta, user);
    for (let i = 0; i < 3; i++) {
      ta.clock.advance(60);
      nextTotpStep(ta.clock);
      const challenge = await mfaChallenge(ta, user);
      const res = await loginMfa(ta, challenge.mfa_token, 'totp', totpCodeAt(secret, ta.clock()));
      assert.equal(res.statusCode, 200, res.body);
    }
    assert.equal((await liveIds(ta, user)).length, 2);

    const other = await createUser(ta.app);
    const { authenticator } = await addPasskey(ta, (await loginTokens(ta.app, other)).access_token);
    const sids: string[] = [];
    for (let i = 0; i < 3; i++) {
      ta.clock.advance(60);
      const res = await signInWithPasskey(ta, authenticator);
      assert.equal(res.statusCode, 200, res.body);
      sids.push(sidOf(res.json().access_token));
    }
    assert.deepEqual(await liveIds(ta, other), sids.slice(1).reverse());
  });

  test('20 simultaneous logins at a cap of 3: every one succeeds, and the cap holds', async (t) => {
    const ta = await suite.build(t, { env: { MAX_SESSIONS_PER_USER: '3', RATE_LIMIT_DISABLED: 'true' } });
    const user = await createUser(ta.app);
    const answers = await Promise.all(Array.from({ length: 20 }, () => login(ta.app, { username: user.username, password: user.password })));
    assert.deepEqual(answers.map((r) => r.statusCode), Array(20).fill(200), answers.map((r) => r.body).join('\n'));
    // Every login holds the user row's update lock when it trims, so the trims of one account run one
    // after the other, each seeing the sessions committed before it; a trim skips only rows another
    // transaction holds (a refresh, a request for that session), and nothing else touches this
    // account's sessions here: the overshoot bound is 0.
    assert.ok((await liveIds(ta, user)).length <= 3, `${(await liveIds(ta, user)).length} live sessions`);
    assert.equal((await revokedFor(ta, user, 'session_limit')).length, 20 - (await liveIds(ta, user)).length, 'every trimmed session audited');
    const last = await loginTokens(ta.app, user);
    const live = await liveIds(ta, user);
    assert.equal(live.length, 3);
    assert.ok(live.includes(sidOf(last.access_token)), 'the new session is one of them');
  });

  test('a password change racing dozens of logins at the cap: no 500, no deadlock, only the changer\'s session survives', async (t) => {
    // The changer's session is the newest of 30, so the 24 logins (each ending the oldest) cannot end it first.
    const ta = await suite.build(t, { env: { MAX_SESSIONS_PER_USER: '30', RATE_LIMIT_DISABLED: 'true' } });
    const user = await createUser(ta.app);
    await insertLegacySessions(ta, user, 29, 3600);
    const changer = await loginTokens(ta.app, user);
    assert.equal((await liveIds(ta, user)).length, 30);
    const changing = post(ta, '/api/v1/user/password/change', changer.access_token, { current_password: user.password, password1: NEW_PW, password2: NEW_PW });
    const logins = Array.from({ length: 24 }, () => login(ta.app, { username: user.username, password: user.password }));
    const [change, ...answers] = await Promise.all([changing, ...logins]);
    assert.equal(change.statusCode, 204, change.body);
    for (const r of answers) {
      assert.ok(r.statusCode === 200 || (r.statusCode === 401 && r.json().code === 'invalid_credentials'), `${r.statusCode} ${r.body}`);
    }
    t.diagnostic(`logins: ${answers.filter((r) => r.statusCode === 200).length} succeeded before the change, ${answers.filter((r) => r.statusCode === 401).length} refused after it`);
    assert.deepEqual(await liveIds(ta, user), [sidOf(changer.access_token)]);
    const after = await login(ta.app, { username: user.username, password: NEW_PW });
    assert.equal(after.statusCode, 200, after.body);
    assert.equal((await liveIds(ta, user)).length, 2);
  });

  test('listings are bounded by the cap and always include the caller\'s session, even the oldest', async (t) => {
    const ta = await suite.build(t, { env: { ...ADMIN_ENV, MAX_SESSIONS_PER_USER: '3' } });
    const user = await createUser(ta.app);
    const mine = await loginTokens(ta.app, user);
    ta.clock.advance(120);
    // An account over the cap from before it: ten newer sessions no login has trimmed yet.
    await insertLegacySessions(ta, user, 10, 60);
    const live = await liveIds(ta, user);
    assert.equal(live.length, 11);

    const listRes = await get(ta, '/api/v1/auth-jwt/sessions', mine.access_token);
    assert.equal(listRes.statusCode, 200, listRes.body);
    const listed = listRes.json() as Array<Record<string, unknown>>;
    assert.equal(listed.length, 3);
    assert.deepEqual(listed.map((s) => s.id), [live[0], live[1], sidOf(mine.access_token)], 'the two newest, then the caller\'s, newest first');
    assert.deepEqual(listed.map((s) => s.current), [false, false, true]);
    assert.deepEqual(Object.keys(listed[0]!).sort(), ['created_at', 'current', 'id', 'ip', 'last_used_at', 'user_agent']);

    const admin = await adminCall(ta, 'GET', `/api/v1/admin/users/${user.uuid}`);
    assert.equal(admin.statusCode, 200, admin.body);
    assert.deepEqual(admin.json().sessions.map((s: { id: string }) => s.id), live.slice(0, 3), 'the admin sees the newest three');
  });

  test('an account far over the cap is trimmed a bounded batch per login', async (t) => {
    const ta = await suite.build(t, { env: { MAX_SESSIONS_PER_USER: '3' } });
    const user = await createUser(ta.app);
    const extra = SESSION_TRIM_BATCH + 10;
    await insertLegacySessions(ta, user, extra, 3600);
    const first = await loginTokens(ta.app, user);
    assert.equal((await liveIds(ta, user)).length, extra + 1 - SESSION_TRIM_BATCH, 'one batch ended, the oldest');
    assert.ok((await liveIds(ta, user)).includes(sidOf(first.access_token)));
    ta.clock.advance(1);
    await loginTokens(ta.app, user);
    assert.equal((await liveIds(ta, user)).length, 3, 'the next login ends the rest');
    assert.equal((await revokedFor(ta, user, 'session_limit')).length, extra - 1);
  });
});

/** Resolves true as soon as a backend of the database waits for a lock; false once `stop` says so. */
async function someoneWaits(monitor: pg.Client, stop: () => boolean): Promise<boolean> {
  while (!stop()) {
    const waiting = await monitor.query(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
    if (waiting.rows.length > 0) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

if (process.env.DATABASE_URL) {
  test('a login at the cap skips an old session another transaction holds, and waits for nothing [postgres]', async (t) => {
    const { td, other, monitor } = await appWithSecondConnection(t);
    const ta = await buildTestApp(t, td.db, { env: { MAX_SESSIONS_PER_USER: '3' }, clock: createTestClock(new Date()) });
    const user = await createUser(ta.app);
    const sids: string[] = [];
    for (let i = 0; i < 3; i++) {
      sids.push(sidOf((await loginTokens(ta.app, user)).access_token));
      ta.clock.advance(1);
    }
    // A first factor being confirmed from the oldest session: it holds that session (FOR SHARE), then
    // asks for the user row, which the login holds when it trims. A trim waiting for the session would
    // close the cycle (PostgreSQL aborts one side: a 503 here).
    await other.query("SET deadlock_timeout = '30s'");
    await other.query('BEGIN');
    await other.query('SELECT 1 FROM sessions WHERE id = $1 FOR SHARE', [sids[0]]);
    let done = false;
    const pending = login(ta.app, { username: user.username, password: user.password }).finally(() => {
      done = true;
    });
    const waited = await someoneWaits(monitor, () => done);
    if (waited) await other.query('SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE', [user.uuid]).catch(() => undefined);
    const res = await pending;
    await other.query('SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE', [user.uuid]);
    await other.query('COMMIT');
    assert.equal(waited, false, 'the login waited for the held session');
    assert.equal(res.statusCode, 200, res.body);
    const live = await liveIds(ta, user);
    assert.equal(live.length, 4, 'the held session, the only one due, was skipped: one over the cap');
    assert.ok(live.includes(sids[0]!));
    await loginTokens(ta.app, user);
    const after = await liveIds(ta, user);
    assert.equal(after.length, 3, 'the next login ends it');
    assert.ok(!after.includes(sids[0]!) && !after.includes(sids[1]!));
  });
}
