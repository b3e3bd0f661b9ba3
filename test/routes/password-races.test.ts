/**
 * Requests in flight across a password reset (or the end of their session), held at the exact point
 * by a wrapped `deps.passwords` method so the race is certain, on PGlite and, with DATABASE_URL, on
 * PostgreSQL: a password change, TOTP removal by password, the login's rehash, and an MFA challenge
 * won with the old password. The reset's password must stay in force and nothing won with the old
 * one may survive it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { totpCodeAt } from '../../src/crypto/totp.ts';
import { createUser, describeWithApp, enableTotp, login, loginTokens, nextTotpStep, type TestApp, type TestUser } from '../helpers/app.ts';
import { del, get, loginMfa, mfaChallenge, post } from '../helpers/factors.ts';
import { latestToken, mailsTo } from '../helpers/mail-links.ts';
import { settleDeferred } from '../../src/services/deferred.ts';

const RESET_PW = 'plum orchard under winter rain';
const ATTACKER_PW = 'violet harbour eleven kites';

/** Asks for a reset link for `user` (from its own address, so quotas never interfere) and returns its token. */
async function resetToken(ta: TestApp, user: TestUser, ip = '192.0.2.10'): Promise<string> {
  await ta.app.inject({ method: 'POST', url: '/api/v1/user/password/forgot', payload: { email: user.email }, remoteAddress: ip });
  return latestToken(ta, user.email, 'password_reset');
}

function reset(ta: TestApp, token: string) {
  return ta.app.inject({ method: 'POST', url: '/api/v1/user/password/reset', payload: { token, password1: RESET_PW, password2: RESET_PW } });
}

function change(ta: TestApp, access: string, current: string) {
  return post(ta, '/api/v1/user/password/change', access, { current_password: current, password1: ATTACKER_PW, password2: ATTACKER_PW });
}

/**
 * Replaces `method` of the app's password hasher: `hold` runs once, the first time `when` matches
 * the password, after the real method returned and before its result goes back to the service.
 * (`verify` calls `check`, so a held `check` also holds the first matching `verify`.)
 */
function holdAfter(ta: TestApp, method: 'hash' | 'check' | 'verify', when: (password: string) => boolean, hold: () => Promise<void>): void {
  const hasher = ta.deps.passwords as unknown as Record<typeof method, (...args: string[]) => Promise<unknown>>;
  const real = hasher[method].bind(hasher);
  let held = false;
  hasher[method] = async (...args) => {
    const out = await real(...args);
    if (!held && when(args[args.length - 1]!)) {
      held = true;
      await hold();
    }
    return out;
  };
}

/** Waits `n` turns of the event loop (none when n <= 0). */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

async function liveSessions(ta: TestApp, user: TestUser): Promise<number> {
  return (await ta.deps.db.query('SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL', [user.uuid])).rows.length;
}

describeWithApp('password races', (suite) => {
  test('a password change past its checks when a reset commits: 401 invalid_token, the reset\'s password stays', async (t) => {
    const ta = await suite.build(t);
    const victim = await createUser(ta.app);
    const attacker = await loginTokens(ta.app, victim); // a stolen session, and the old password
    const token = await resetToken(ta, victim);
    // The change has verified the old password and hashed the new one; the victim's reset commits now.
    holdAfter(ta, 'hash', (p) => p === ATTACKER_PW, async () => assert.equal((await reset(ta, token)).statusCode, 204));

    const res = await change(ta, attacker.access_token, victim.password);
    assert.equal(res.statusCode, 401, res.body);
    assert.equal(res.json().code, 'invalid_token');
    assert.equal(await liveSessions(ta, victim), 0, 'the reset ended every session, the attacker\'s too');
    assert.equal((await login(ta.app, { username: victim.username, password: ATTACKER_PW })).statusCode, 401, 'the attacker\'s password is not in force');
    assert.equal((await login(ta.app, { username: victim.username, password: RESET_PW })).statusCode, 200, 'the reset\'s password is');
    await ta.deliverMail();
    assert.equal(mailsTo(ta, victim.email, 'password_changed').length, 1, 'only the reset sent a notice');
  });

  test('a password change whose session is logged out meanwhile changes nothing', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const session = await loginTokens(ta.app, user);
    holdAfter(ta, 'hash', (p) => p === ATTACKER_PW, async () => assert.equal((await post(ta, '/api/v1/auth-jwt/logout', session.access_token)).statusCode, 204));

    const res = await change(ta, session.access_token, user.password);
    assert.equal(res.statusCode, 401, res.body);
    assert.equal(res.json().code, 'invalid_token');
    assert.equal((await login(ta.app, { username: user.username, password: ATTACKER_PW })).statusCode, 401);
    assert.equal((await login(ta.app, { username: user.username, password: user.password })).statusCode, 200, 'the password is unchanged');
  });

  test('password change and reset sent at once, 10 rounds: one of them wins, never both', async (t) => {
    const ta = await suite.build(t, { env: { RATE_LIMIT_DISABLED: 'true' } });
    const outcomes: string[] = [];
    for (let i = 0; i < 10; i++) {
      const victim = await createUser(ta.app);
      const attacker = await loginTokens(ta.app, victim);
      const token = await resetToken(ta, victim, `198.51.100.${i + 1}`);
      // One starts a few event-loop turns after the other (the reset first in the early rounds), so
      // the reset commits before, during and after the change's checks.
      const lag = i - 5;
      const [c, r] = await Promise.all([turns(lag).then(() => change(ta, attacker.access_token, victim.password)), turns(-lag).then(() => reset(ta, token))]);
      outcomes.push(`${c.statusCode}/${r.statusCode}`);
      const round = `round ${i} (change/reset: ${outcomes.join(' ')})`;
      const byReset = await login(ta.app, { username: victim.username, password: RESET_PW });
      const byAttacker = await login(ta.app, { username: victim.username, password: ATTACKER_PW });
      if (r.statusCode === 204) {
        // The reset won: the change was refused (its session ended; or, when it read the user after the
        // reset, its old password no longer matched), and the reset's password is in force.
        assert.equal(c.statusCode, 401, `${round}: ${c.body}`);
        assert.ok(['invalid_token', 'invalid_credentials'].includes(c.json().code), `${round}: ${c.body}`);
        assert.equal(byAttacker.statusCode, 401, `${round}: the attacker's password replaced the reset's`);
        assert.equal(byReset.statusCode, 200, round);
        assert.equal((await get(ta, '/api/v1/auth-jwt/user-info', attacker.access_token)).statusCode, 401, round);
      } else {
        // The change committed first and voided the link: the owner sees the reset fail and asks again.
        assert.equal(r.statusCode, 400, `${round}: ${r.body}`);
        assert.equal(r.json().code, 'invalid_or_expired_token');
        assert.equal(c.statusCode, 204, round);
        assert.equal(byReset.statusCode, 401, round);
      }
    }
    t.diagnostic(`change/reset: ${outcomes.join(' ')}`);
  });

  test('removing TOTP with a password checked before a reset commits: 401 invalid_token, TOTP stays', async (t) => {
    const ta = await suite.build(t);
    const victim = await createUser(ta.app);
    const { tokens } = await enableTotp(ta, victim); // a stolen aal2 session, and the old password
    const token = await resetToken(ta, victim);
    holdAfter(ta, 'verify', (p) => p === victim.password, async () => assert.equal((await reset(ta, token)).statusCode, 204));

    const res = await del(ta, '/api/v1/auth-totp', tokens.access_token, { password: victim.password });
    assert.equal(res.statusCode, 401, res.body);
    assert.equal(res.json().code, 'invalid_token');
    const totp = await ta.deps.db.query<{ active: boolean }>('SELECT active_secret IS NOT NULL AS active FROM totp_factors WHERE user_id = $1', [victim.uuid]);
    assert.equal(totp.rows[0]?.active, true, 'TOTP is still on');
    const after = await login(ta.app, { username: victim.username, password: RESET_PW });
    assert.equal(after.json().code, 'mfa_required', 'the new password still needs the second factor');
  });

  test('a first login with a code, its password checked before a reset commits, binds no TOTP', async (t) => {
    const ta = await suite.build(t);
    const victim = await createUser(ta.app);
    // Someone with the old password enrols TOTP through the password-only /qrcode.
    const qr = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-totp/qrcode', headers: { accept: 'application/json' }, payload: { username: victim.username, password: victim.password } });
    assert.equal(qr.statusCode, 201, qr.body);
    const secret = qr.json().secret as string;
    const token = await resetToken(ta, victim);
    holdAfter(ta, 'check', (p) => p === victim.password, async () => assert.equal((await reset(ta, token)).statusCode, 204));

    const res = await login(ta.app, { username: victim.username, password: victim.password, security_code: totpCodeAt(secret, ta.clock()) });
    assert.equal(res.statusCode, 401, res.body);
    assert.equal(res.json().code, 'invalid_credentials');
    const totp = await ta.deps.db.query<{ active: boolean }>('SELECT active_secret IS NOT NULL AS active FROM totp_factors WHERE user_id = $1', [victim.uuid]);
    assert.notEqual(totp.rows[0]?.active, true, 'no factor bound by the old password');
    assert.equal(await liveSessions(ta, victim), 0);
    const owner = await login(ta.app, { username: victim.username, password: RESET_PW });
    assert.equal(owner.statusCode, 200, `the owner is not locked out behind a stranger's TOTP: ${owner.body}`);
  });

  test('a one-step backup-code login, its password checked before a reset commits, spends no code', async (t) => {
    const ta = await suite.build(t);
    const victim = await createUser(ta.app);
    const { backupCodes } = await enableTotp(ta, victim);
    const token = await resetToken(ta, victim);
    holdAfter(ta, 'check', (p) => p === victim.password, async () => assert.equal((await reset(ta, token)).statusCode, 204));

    const res = await login(ta.app, { username: victim.username, password: victim.password, backup_code: backupCodes[0] });
    assert.equal(res.statusCode, 401, res.body);
    assert.equal(res.json().code, 'invalid_credentials');
    const left = await ta.deps.db.query('SELECT id FROM backup_codes WHERE user_id = $1', [victim.uuid]);
    assert.equal(left.rows.length, 10, 'the code was not used up by a refused login');
    const owner = await login(ta.app, { username: victim.username, password: RESET_PW, backup_code: backupCodes[0] });
    assert.equal(owner.statusCode, 200, owner.body);
  });

  test('a login\'s rehash held across a reset does not bring the old password back', async (t) => {
    // Hashed at 1 MiB; the app below hashes at 2 MiB, so the login rehashes the stored hash.
    const old = await suite.build(t);
    const victim = await createUser(old.app);
    const ta = await suite.build(t, { env: { PASSWORD_HASH_MEMORY_KIB: '2048' } });
    const token = await resetToken(ta, victim);
    // The login's new hash of the old password is ready; the reset commits before it is written.
    holdAfter(ta, 'hash', (p) => p === victim.password, async () => assert.equal((await reset(ta, token)).statusCode, 204));

    const inFlight = await login(ta.app, { username: victim.username, password: victim.password });
    assert.equal(inFlight.statusCode, 401, inFlight.body);
    assert.equal(inFlight.json().code, 'invalid_credentials');
    assert.equal(await liveSessions(ta, victim), 0, 'no session for the old password');
    assert.equal((await login(ta.app, { username: victim.username, password: victim.password })).statusCode, 401, 'the old password works again');
    assert.equal((await login(ta.app, { username: victim.username, password: RESET_PW })).statusCode, 200);

    // Without a reset the rehash is still written.
    const other = await createUser(old.app);
    assert.equal((await login(ta.app, { username: other.username, password: other.password })).statusCode, 200);
    const stored = await ta.deps.db.query<{ password_hash: string }>('SELECT password_hash FROM users WHERE id = $1', [other.uuid]);
    assert.match(stored.rows[0]!.password_hash, /\$m=2048,/);
  });

  test('a password check held across a reset opens no MFA challenge, so no session', async (t) => {
    const ta = await suite.build(t);
    const victim = await createUser(ta.app);
    const { secret } = await enableTotp(ta, victim);
    const token = await resetToken(ta, victim);
    // The old password was found right; the reset commits (ending open challenges) before the login goes on.
    holdAfter(ta, 'check', (p) => p === victim.password, async () => assert.equal((await reset(ta, token)).statusCode, 204));

    const first = await login(ta.app, { username: victim.username, password: victim.password });
    if (first.json().mfa_token) {
      nextTotpStep(ta.clock);
      const second = await loginMfa(ta, first.json().mfa_token, 'totp', totpCodeAt(secret, ta.clock()));
      assert.notEqual(second.statusCode, 200, 'a challenge won with the old password completed after the reset');
    }
    assert.equal(first.statusCode, 401, first.body);
    assert.equal(first.json().code, 'invalid_credentials');
    const open = await ta.deps.db.query('SELECT id FROM mfa_challenges WHERE user_id = $1 AND consumed_at IS NULL', [victim.uuid]);
    assert.equal(open.rows.length, 0, 'no open challenge won with the old password');
    assert.equal(await liveSessions(ta, victim), 0);
  });

  test('a challenge whose password changed after its check completes into no session', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const { secret } = await enableTotp(ta, user);
    const { mfa_token } = await mfaChallenge(ta, user);
    // A password change this challenge escaped (a reset ends open challenges; this is the second guard).
    await ta.deps.db.query('UPDATE users SET password_changed_at = $2 WHERE id = $1', [user.uuid, ta.clock()]);
    await ta.deps.db.query('UPDATE sessions SET revoked_at = $2 WHERE user_id = $1', [user.uuid, ta.clock()]);
    nextTotpStep(ta.clock);

    const res = await loginMfa(ta, mfa_token, 'totp', totpCodeAt(secret, ta.clock()));
    assert.equal(res.statusCode, 401, res.body);
    assert.equal(res.json().code, 'invalid_token');
    assert.equal(res.json().access_token, undefined);
    assert.equal(await liveSessions(ta, user), 0, 'no session was created');
  });

  test('forgot-password requests at once leave one live reset link ("a new link voids the earlier ones")', async (t) => {
    const ta = await suite.build(t);
    for (let round = 0; round < 4; round++) {
      const user = await createUser(ta.app);
      await Promise.all([1, 2, 3].map((k) => ta.app.inject({ method: 'POST', url: '/api/v1/user/password/forgot', payload: { email: user.email }, remoteAddress: `198.51.100.${round * 3 + k}` })));
      await settleDeferred(ta.deps);
      const live = await ta.deps.db.query<{ n: number }>("SELECT count(*)::int AS n FROM email_tokens WHERE user_id = $1 AND purpose = 'reset_password' AND consumed_at IS NULL", [user.uuid]);
      assert.equal(live.rows[0]!.n, 1, `round ${round}`);
    }
  });
});
