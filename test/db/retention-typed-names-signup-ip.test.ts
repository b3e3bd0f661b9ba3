/**
 * The retention job's privacy part: expired WebAuthn challenges (which hold a digest of a passwordless
 * sign-in's typed login name, known or not) are deleted a day past
 * their expiry, whatever their purpose and also after the account was deleted; a user's sign-up
 * address is cleared once it no longer makes reset requests the owner's (OWNER_MEMORY_DAYS). What is
 * still live or recent stays, and the job's other work is unchanged.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SPENT_ROW_RETENTION, pruneSpentRows } from '../../src/services/audit/retention.ts';
import { OWNER_MEMORY_DAYS, isOwnerAddress } from '../../src/services/mail-quota.ts';
import { ADMIN_ENV, adminCall } from '../helpers/admin.ts';
import { buildTestApp, createTestClock, createUser, login, type TestApp } from '../helpers/app.ts';
import { withDatabases } from '../helpers/pg-database.ts';

const DAY_S = 86_400;
const NOTHING = { sessions: 0, mfa_challenges: 0, webauthn_challenges: 0, email_tokens: 0, outbox: 0, signup_ip: 0 };

async function challengeIds(ta: TestApp): Promise<string[]> {
  return (await ta.deps.db.query<{ id: string }>('SELECT id FROM webauthn_challenges ORDER BY id')).rows.map((r) => r.id);
}

async function signupIp(ta: TestApp, userId: string): Promise<string | null> {
  return (await ta.deps.db.query<{ signup_ip: string | null }>('SELECT signup_ip FROM users WHERE id = $1', [userId])).rows[0]!.signup_ip;
}

/** A challenge row as the repositories store it, expiring at `expires`. */
async function insertChallenge(ta: TestApp, id: string, purpose: string, expires: Date, binding: { userId?: string; mfaChallengeId?: string; loginName?: string }): Promise<void> {
  await ta.deps.db.query(
    'INSERT INTO webauthn_challenges (id, challenge, purpose, user_id, mfa_challenge_id, login_name, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)',
    [id, `challenge-${id}`, purpose, binding.userId ?? null, binding.mfaChallengeId ?? null, binding.loginName ?? null, expires],
  );
}

withDatabases('retention of typed login names and sign-up addresses', ({ open }) => {
  test('expired WebAuthn challenges of every purpose go a day past their expiry, also after the account was deleted; live and recent ones stay', async (t) => {
    const d = await open();
    const ta = await buildTestApp(t, d.db, { env: ADMIN_ENV, clock: createTestClock() });
    const erased = await createUser(ta.app);
    const kept = await createUser(ta.app);
    // What was typed at the passwordless options, known or not: stored with the challenge as a digest.
    const typed = [erased.email, 'my secret passw0rd typed here', 'nobody@example.org'];
    for (const username of typed) {
      const r = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login/passkey/options', payload: { username } });
      assert.equal(r.statusCode, 200, r.body);
    }
    const stored = (await ta.deps.db.query<{ login_name: string }>('SELECT login_name FROM webauthn_challenges')).rows.map((r) => r.login_name);
    assert.equal(new Set(stored).size, 3, 'one login name per challenge');
    assert.equal((await adminCall(ta, 'DELETE', `/api/v1/admin/users/${erased.uuid}`)).statusCode, 204);
    assert.equal((await challengeIds(ta)).length, 3, 'the deletion leaves challenges keyed by a typed name');

    // Two days on (no one asked for options since, so no request swept them).
    ta.clock.advance((SPENT_ROW_RETENTION.challengesDays + 1) * DAY_S);
    const now = ta.clock().getTime();
    const longAgo = new Date(now - (SPENT_ROW_RETENTION.challengesDays * DAY_S + 3600) * 1000);
    const recently = new Date(now - 3600 * 1000);
    const later = new Date(now + 300 * 1000);
    // An MFA challenge still live: its passkey challenge's own expiry is what the job goes by.
    await ta.deps.db.query("INSERT INTO mfa_challenges (id, user_id, created_at, expires_at) VALUES ('01937a5e-3f1c-7cc0-9a41-0c5a1d2f7e31', $1, $2, $3)", [kept.uuid, new Date(now), later]);
    await insertChallenge(ta, 'old-registration', 'registration', longAgo, { userId: kept.uuid });
    await insertChallenge(ta, 'old-mfa', 'mfa', longAgo, { userId: kept.uuid, mfaChallengeId: '01937a5e-3f1c-7cc0-9a41-0c5a1d2f7e31' });
    await insertChallenge(ta, 'recent-login', 'login', recently, { loginName: 'inside the grace' });
    await insertChallenge(ta, 'live-login', 'login', later, { loginName: kept.username });
    await insertChallenge(ta, 'live-registration', 'registration', later, { userId: kept.uuid });

    assert.deepEqual(await pruneSpentRows(ta.deps), { ...NOTHING, webauthn_challenges: 5 });
    assert.deepEqual(await challengeIds(ta), ['live-login', 'live-registration', 'recent-login']);
    const names = (await ta.deps.db.query<{ n: number }>('SELECT count(*)::int AS n FROM webauthn_challenges WHERE login_name = ANY ($1::text[])', [stored])).rows[0]!.n;
    assert.equal(names, 0, 'no typed name is left');
    assert.equal((await ta.deps.db.query('SELECT 1 FROM mfa_challenges')).rows.length, 1, 'the live MFA challenge stays');
    assert.deepEqual(await pruneSpentRows(ta.deps), NOTHING);

    // Two days later the one that had just expired goes too, and the live ones, expired by then as well
    // (with the MFA challenge, and the kept user's verification link: the job's other work, as before).
    ta.clock.advance((SPENT_ROW_RETENTION.challengesDays + 1) * DAY_S);
    assert.deepEqual(await pruneSpentRows(ta.deps), { ...NOTHING, mfa_challenges: 1, webauthn_challenges: 3, email_tokens: 1 });
    assert.deepEqual(await challengeIds(ta), []);
  });

  test('a sign-up address is cleared once it no longer makes reset requests the owner’s; newer ones stay, and so does that use', async (t) => {
    const d = await open();
    const clock = createTestClock();
    const ta = await buildTestApp(t, d.db, { clock });
    assert.equal(SPENT_ROW_RETENTION.signupIpDays, OWNER_MEMORY_DAYS);
    const oldest = await createUser(ta.app);
    clock.advance(2 * DAY_S);
    const nearly = await createUser(ta.app);
    clock.advance((OWNER_MEMORY_DAYS - 2) * DAY_S + 3600); // `oldest` signed up 90 days and an hour ago
    const fresh = await createUser(ta.app);
    const ip = '127.0.0.1';
    for (const u of [oldest, nearly, fresh]) assert.equal(await signupIp(ta, u.uuid), ip, 'signed up through the API, from inject’s address');
    // The quota's view before the job: only the addresses inside the 90 days count (none has logged in).
    const owner = async (u: { uuid: string }): Promise<boolean> => isOwnerAddress(ta.deps.db, u.uuid, ip, clock());
    assert.deepEqual([await owner(oldest), await owner(nearly), await owner(fresh)], [false, true, true]);

    // The two older users' verification links (a day's validity) go as before.
    assert.deepEqual(await pruneSpentRows(ta.deps), { ...NOTHING, signup_ip: 1, email_tokens: 2 });
    assert.equal(await signupIp(ta, oldest.uuid), null);
    assert.equal(await signupIp(ta, nearly.uuid), ip);
    assert.equal(await signupIp(ta, fresh.uuid), ip);
    assert.deepEqual([await owner(oldest), await owner(nearly), await owner(fresh)], [false, true, true], 'the quota sees the same');
    assert.deepEqual(await pruneSpentRows(ta.deps), NOTHING);

    clock.advance(3 * DAY_S);
    assert.deepEqual(await pruneSpentRows(ta.deps), { ...NOTHING, signup_ip: 1, email_tokens: 1 });
    assert.equal(await signupIp(ta, nearly.uuid), null);
    assert.equal(await signupIp(ta, fresh.uuid), ip);
  });

  test('clearing sign-up addresses while those users log in: every login succeeds, and the next run clears what was skipped', async (t) => {
    const d = await open();
    const clock = createTestClock();
    const ta = await buildTestApp(t, d.db, { clock });
    const users = [];
    for (let i = 0; i < 12; i++) users.push(await createUser(ta.app));
    clock.advance((OWNER_MEMORY_DAYS + 1) * DAY_S);
    const [logins] = await Promise.all([
      Promise.all(users.flatMap((u) => [login(ta.app, { username: u.username, password: u.password }), login(ta.app, { username: u.email, password: u.password })])),
      Promise.all(Array.from({ length: 6 }, () => pruneSpentRows(ta.deps))),
    ]);
    for (const r of logins) assert.equal(r.statusCode, 200, r.body);
    await pruneSpentRows(ta.deps);
    const left = (await ta.deps.db.query<{ n: number }>('SELECT count(*)::int AS n FROM users WHERE signup_ip IS NOT NULL')).rows[0]!.n;
    assert.equal(left, 0);
    const sessions = (await ta.deps.db.query<{ n: number }>('SELECT count(*)::int AS n FROM sessions')).rows[0]!.n;
    assert.equal(sessions, users.length * 2);
  });

  test('the hourly clearing finds the users still holding a sign-up address through an index, not by reading every user', async () => {
    const d = await open();
    // The planner would read a small table whole anyway; with sequential scans priced out, the plan
    // shows whether an index can serve the job's statement at all (without one it stays a seq scan).
    const plan = await d.db.transaction(async (tx) => {
      await tx.query('SET LOCAL enable_seqscan = off');
      const r = await tx.query<{ 'QUERY PLAN': string }>(
        `EXPLAIN UPDATE users SET signup_ip = NULL WHERE id IN (
           SELECT id FROM users WHERE signup_ip IS NOT NULL AND created_at < '2026-01-01T00:00:00Z' LIMIT 500 FOR NO KEY UPDATE SKIP LOCKED)`,
      );
      return r.rows.map((row) => row['QUERY PLAN']).join('\n');
    });
    assert.match(plan, /users_signup_ip_created_idx/, plan);
  });
});
