/**
 * The attack: a copy of the database (a leaked backup, a read-only SQL injection elsewhere). It must
 * yield no password, no TOTP secret, no backup or e-mailed code, no token and no link token in the
 * clear: the contract stores hashes, sealed secrets and token ids only.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeJwt } from 'jose';
import { normalizeBackupCode } from '../../src/crypto/random.ts';
import { createUser, describeWithApp, enableTotp, nextTotpStep } from '../helpers/app.ts';
import { enableEmailOtp, lastCode, mfaChallenge, post, requestLoginCode } from '../helpers/factors.ts';
import { latestToken } from '../helpers/mail-links.ts';

describeWithApp('secrets at rest', (suite) => {
  test('a dump of every table holds none of the user\'s secrets in the clear', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const verificationToken = await latestToken(ta, user.email, 'verify_email');
    const { secret, tokens } = await enableTotp(ta, user);
    const backup = await post(ta, '/api/v1/backup-codes', tokens.access_token);
    assert.equal(backup.statusCode, 201);
    const backupCodes: string[] = backup.json().backup_codes;
    await enableEmailOtp(ta, user, tokens.access_token);

    nextTotpStep(ta.clock);
    const { mfa_token } = await mfaChallenge(ta, user);
    assert.equal((await requestLoginCode(ta, mfa_token)).statusCode, 202);
    const loginCode = await lastCode(ta, 'email_otp_login', user.email); // live, not yet used
    assert.equal((await ta.app.inject({ method: 'POST', url: '/api/v1/user/password/forgot', payload: { email: user.email } })).statusCode, 202);
    const resetToken = await latestToken(ta, user.email, 'password_reset'); // live, not yet used
    const refreshed = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: tokens.refresh_token } });
    const live = refreshed.json();

    const tables = await ta.deps.db.query<{ name: string }>(
      "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
    );
    assert.ok(tables.rows.length >= 9);
    let dump = '';
    for (const { name } of tables.rows) {
      const rows = await ta.deps.db.query<{ r: string }>(`SELECT t::text AS r FROM "${name}" t`);
      dump += rows.rows.map((r) => r.r).join('\n');
    }

    const clear: Array<[string, string]> = [
      ['password', user.password],
      ['TOTP secret', secret],
      ['access token', live.access_token],
      ['refresh token', live.refresh_token],
      ['mfa token', mfa_token],
      ['reset link token', resetToken],
      ['verification link token', verificationToken],
      ...backupCodes.flatMap((c): Array<[string, string]> => [['backup code', c], ['backup code (normalised)', normalizeBackupCode(c)]]),
    ];
    for (const [what, value] of clear) assert.ok(!dump.includes(value), `${what} is stored in the clear`);
    // Six digits could occur inside a hex digest by chance; a stored code would stand on its own.
    assert.doesNotMatch(dump, new RegExp(`(?<![0-9a-f])${loginCode}(?![0-9a-f])`), 'the e-mailed code is stored in the clear');
    // What is stored instead: the refresh token's id (the contract's one session row per login).
    assert.ok(dump.includes(String(decodeJwt(live.refresh_token).jti)));
    assert.match(dump, /\$argon2id\$/);
  });
});
