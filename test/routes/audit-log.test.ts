import assert from 'node:assert/strict';
import { test } from 'node:test';
import { totpCodeAt } from '../../src/crypto/totp.ts';
import { registerAuditFollower, recordSecurityEvent, scrubSecrets, SYSTEM_CONTEXT } from '../../src/services/audit/record.ts';
import { PASSWORD, bearer, createUser, describeWithApp, enableTotp, login, loginTokens, nextTotpStep, quietLogger, uniqueName } from '../helpers/app.ts';
import { auditRowsOf, auditTypesOf } from '../helpers/admin.ts';
import { latestToken } from '../helpers/mail-links.ts';

describeWithApp('audit log: every flow writes its entry', (suite) => {
  test('sign-up, failed and successful logins, lock, logout: entries with actor, ip, user agent', async (t) => {
    const ta = await suite.build(t, { env: { LOCKOUT_MAX_FAILURES: '3' } });
    const user = await createUser(ta.app);
    const ua = { 'user-agent': 'AuditTest/1.0' };
    const wrong = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login', payload: { username: user.username, password: 'not the password at all' }, headers: ua, remoteAddress: '198.51.100.9' });
    assert.equal(wrong.statusCode, 401);
    const ok = await login(ta.app, { username: user.username, password: user.password }, ua);
    assert.equal(ok.statusCode, 200);
    const out = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout', headers: bearer(ok.json().access_token) });
    assert.equal(out.statusCode, 204);
    for (let i = 0; i < 3; i++) await login(ta.app, { username: user.username, password: `wrong password ${i}` });

    const rows = await auditRowsOf(ta, user.uuid);
    assert.deepEqual(rows.map((r) => r.type), ['user.created', 'login.failed', 'login.succeeded', 'session.revoked', 'login.failed', 'login.failed', 'login.failed', 'login.locked']);
    const failed = rows[1]!;
    assert.equal(failed.ip, '198.51.100.9');
    assert.equal(failed.user_agent, 'AuditTest/1.0');
    assert.deepEqual(failed.actor_kind, 'user');
    assert.equal(failed.actor_id, user.uuid);
    assert.equal(failed.data.reason, 'invalid_password');
    const sid = JSON.parse(Buffer.from(ok.json().access_token.split('.')[1], 'base64url').toString()).sid;
    assert.equal(rows[2]!.data.sid, sid);
    assert.equal(rows[2]!.data.aal, 'aal1');
    assert.deepEqual(rows[3]!.data, { sid, reason: 'logout' });
    // The locked login is refused with 429 and the lock is recorded once, not per refusal.
    const refused = await login(ta.app, { username: user.username, password: user.password });
    assert.equal(refused.statusCode, 429);
    assert.equal((await auditTypesOf(ta, user.uuid)).filter((x) => x === 'login.locked').length, 1);
  });

  test('a login name that matches nobody is recorded without the name (it may be a mistyped password)', async (t) => {
    const ta = await suite.build(t);
    const typed = `${uniqueName('ghost')}-S3cret!`;
    assert.equal((await login(ta.app, { username: typed, password: 'whatever it is' })).statusCode, 401);
    const rows = (await ta.deps.db.query<{ data: unknown; user_id: string | null }>("SELECT data, user_id FROM audit_log WHERE type = 'login.failed' AND user_id IS NULL")).rows;
    assert.ok(rows.length >= 1);
    assert.ok(rows.every((r) => !JSON.stringify(r.data).includes(typed.slice(0, 10))), 'the typed name is not stored');
  });

  test('TOTP, backup codes, second step, refresh reuse, password change and reset, session revoke', async (t) => {
    const ta = await suite.build(t, { env: { REFRESH_REUSE_GRACE_SECONDS: '0' } });
    const user = await createUser(ta.app);
    const { secret, tokens } = await enableTotp(ta, user);
    nextTotpStep(ta.clock);
    const regen = await ta.app.inject({ method: 'POST', url: '/api/v1/backup-codes', headers: bearer(tokens.access_token) });
    assert.equal(regen.statusCode, 201);
    // Two-step login with a wrong, then a right code.
    const first = await login(ta.app, { username: user.username, password: user.password });
    assert.equal(first.statusCode, 403);
    const mfaToken = first.json().mfa_token;
    assert.equal((await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login/mfa', payload: { mfa_token: mfaToken, method: 'totp', code: '000000' } })).statusCode, 401);
    const second = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login/mfa', payload: { mfa_token: mfaToken, method: 'totp', code: totpCodeAt(secret, ta.clock()) } });
    assert.equal(second.statusCode, 200);
    // Refresh reuse: rotate once, then replay the old token.
    ta.clock.advance(5);
    const r1 = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: second.json().refresh_token } });
    assert.equal(r1.statusCode, 200);
    ta.clock.advance(5);
    const replay = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: second.json().refresh_token } });
    assert.equal(replay.json().code, 'refresh_token_reused');
    // Revoke one session by id, change the password (ends the others).
    const extra = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login', payload: { username: user.username, password: user.password, security_code: totpCodeAt(secret, new Date(ta.clock().getTime() + 30_000)) } });
    assert.equal(extra.statusCode, 200);
    const extraSid = JSON.parse(Buffer.from(extra.json().access_token.split('.')[1], 'base64url').toString()).sid;
    assert.equal((await ta.app.inject({ method: 'DELETE', url: `/api/v1/auth-jwt/sessions/${extraSid}`, headers: bearer(tokens.access_token) })).statusCode, 204);
    const kept = await login(ta.app, { username: user.username, password: user.password, backup_code: regen.json().backup_codes[0] });
    assert.equal(kept.statusCode, 200);
    const newPassword = 'a different long passphrase 42';
    const change = await ta.app.inject({ method: 'POST', url: '/api/v1/user/password/change', headers: bearer(tokens.access_token), payload: { current_password: user.password, password1: newPassword, password2: newPassword } });
    assert.equal(change.statusCode, 204);
    const rm = await ta.app.inject({ method: 'DELETE', url: '/api/v1/auth-totp', headers: bearer(tokens.access_token), payload: { password: newPassword } });
    assert.equal(rm.statusCode, 204);

    const types = await auditTypesOf(ta, user.uuid);
    assert.deepEqual(types.slice(0, 4), ['user.created', 'login.succeeded', 'mfa.enabled', 'backup_codes.regenerated']);
    for (const expected of ['login.failed', 'refresh.reused', 'password.changed', 'mfa.disabled']) assert.ok(types.includes(expected), `${expected} in ${types.join()}`);
    const rows = await auditRowsOf(ta, user.uuid);
    const codeFailure = rows.find((r) => r.type === 'login.failed');
    assert.deepEqual(codeFailure?.data, { reason: 'invalid_code', step: 'mfa', method: 'totp' });
    const revoked = rows.filter((r) => r.type === 'session.revoked').map((r) => r.data.reason);
    assert.ok(revoked.includes('refresh_token_reused') && revoked.includes('revoked_by_user') && revoked.includes('password_changed'), revoked.join());
    assert.equal(rows.find((r) => r.type === 'mfa.disabled')?.data.method, 'totp');

    // Reset by the mailed link: password.reset, and the remaining sessions revoked.
    const forgot = await ta.app.inject({ method: 'POST', url: '/api/v1/user/password/forgot', payload: { email: user.email } });
    assert.equal(forgot.statusCode, 202);
    const token = await latestToken(ta, user.email, 'password_reset');
    const reset = await ta.app.inject({ method: 'POST', url: '/api/v1/user/password/reset', payload: { token, password1: PASSWORD + ' again', password2: PASSWORD + ' again' } });
    assert.equal(reset.statusCode, 204);
    assert.ok((await auditTypesOf(ta, user.uuid)).includes('password.reset'));
  });

  test('e-mail verification and sign-up with mfa "email" record email.verified and mfa.enabled', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app, { mfa: 'email' });
    const token = await latestToken(ta, user.email, 'verify_email');
    assert.equal((await ta.app.inject({ method: 'POST', url: '/api/v1/user/email/verify', payload: { token } })).statusCode, 200);
    assert.deepEqual(await auditTypesOf(ta, user.uuid), ['user.created', 'email.verified', 'mfa.enabled']);
  });

  test('no password, code or token ever reaches the log', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const { secret, tokens, backupCodes } = await enableTotp(ta, user);
    await login(ta.app, { username: user.username, password: 'wrong wrong wrong wrong' });
    const all = JSON.stringify((await ta.deps.db.query('SELECT * FROM audit_log')).rows);
    for (const s of [user.password, secret, tokens.access_token, tokens.refresh_token, ...backupCodes, 'wrong wrong wrong wrong']) {
      assert.ok(!all.includes(s), 'a secret is in the audit log');
    }
    assert.deepEqual(scrubSecrets({ password: 'x', nested: { refresh_token: 'y', ok: 1 }, backup_code: 'z', sid: 's' }), { nested: { ok: 1 }, sid: 's' });
    // Whole words of the key, however it is written; words that merely contain one are kept.
    assert.deepEqual(
      scrubSecrets({
        refreshToken: 'a', 'code-hash': 'b', client_secret: 'c', otp_uri: 'd', mfaToken: 'e', password1: 'f', password2: 'g', refreshtoken: 'i', otpcode: 'j',
        otpauth_uri: 'k', api_key: 'l', apiKey: 'm', signature: 'o', private_key: 'q', signing_key: 'r',
        passkey_id: 'p', passkeys: 2, previous_secret_expires_at: 't', hashtag: 'h', codename: 'n', kid: 'u', keyboard: 'v',
      }),
      { passkey_id: 'p', passkeys: 2, previous_secret_expires_at: 't', hashtag: 'h', codename: 'n', kid: 'u', keyboard: 'v' },
    );
  });

  test('an entry commits with its change: a failing follower rolls back the sign-up and its entry', async (t) => {
    const ta = await suite.build(t, { logger: quietLogger() });
    const username = uniqueName('rollback');
    let armed = true;
    const stop = registerAuditFollower(async (_tx, event) => {
      if (armed && event.type === 'user.created') {
        armed = false;
        throw new Error('follower failed');
      }
    });
    t.after(stop);
    const seen: string[] = [];
    const stopSeen = registerAuditFollower(async (_tx, event) => {
      seen.push(event.type);
    });
    t.after(stopSeen);
    const entriesBefore = (await ta.deps.db.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_log WHERE type = 'user.created'")).rows[0]!.n;
    const res = await ta.app.inject({ method: 'POST', url: '/api/v1/user', payload: { username, email: `${username}@example.com`, password1: PASSWORD, password2: PASSWORD } });
    assert.equal(res.statusCode, 500);
    assert.equal((await ta.deps.db.query('SELECT 1 FROM users WHERE username = $1', [username])).rows.length, 0, 'no user');
    assert.equal((await ta.deps.db.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_log WHERE type = 'user.created'")).rows[0]!.n, entriesBefore, 'no entry');
    assert.equal((await ta.deps.db.query('SELECT 1 FROM outbox WHERE to_address = $1', [`${username}@example.com`])).rows.length, 0, 'no mail');
    stop();
    const ok = await createUser(ta.app);
    assert.equal((await ta.deps.db.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_log WHERE type = 'user.created'")).rows[0]!.n, entriesBefore + 1, 'the next sign-up has its entry');
    assert.ok(seen.includes('user.created'), 'followers see entries');
    assert.deepEqual(await auditTypesOf(ta, ok.uuid), ['user.created']);
  });

  test('the table is append-only: UPDATE is refused by the database', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    await assert.rejects(ta.deps.db.query("UPDATE audit_log SET type = 'forged' WHERE user_id = $1", [user.uuid]), /append-only/);
    await assert.rejects(recordSecurityEvent(ta.deps.db, { ...SYSTEM_CONTEXT, type: 'Not A Type', userId: null }), /area\.event/);
    assert.deepEqual(await auditTypesOf(ta, user.uuid), ['user.created']);
  });

  test('GET /api/v1/user/security-events: own entries only, newest first, paginated; admin acts shown without who', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const other = await createUser(ta.app);
    await login(ta.app, { username: other.username, password: 'wrong password here' });
    for (let i = 0; i < 3; i++) await loginTokens(ta.app, user);
    const { access_token } = await loginTokens(ta.app, user);
    assert.equal((await ta.app.inject({ method: 'GET', url: '/api/v1/user/security-events' })).statusCode, 401);
    const page1 = await ta.app.inject({ method: 'GET', url: '/api/v1/user/security-events?limit=3', headers: bearer(access_token) });
    assert.equal(page1.statusCode, 200);
    const body1 = page1.json();
    assert.deepEqual(body1.events.map((e: { type: string }) => e.type), ['login.succeeded', 'login.succeeded', 'login.succeeded']);
    assert.ok(body1.next_cursor);
    const page2 = (await ta.app.inject({ method: 'GET', url: `/api/v1/user/security-events?limit=3&cursor=${body1.next_cursor}`, headers: bearer(access_token) })).json();
    assert.deepEqual(page2.events.map((e: { type: string }) => e.type), ['login.succeeded', 'user.created']);
    assert.equal(page2.next_cursor, null);
    const ids = [...body1.events, ...page2.events].map((e: { id: string }) => e.id);
    assert.equal(new Set(ids).size, 5);
    assert.ok(!JSON.stringify([body1, page2]).includes(other.uuid));
    // Any signed-in user can send a cursor: one past bigint's range is refused, not a failed query (500).
    for (const cursor of ['bm9wZQ', Buffer.from('{"b":"9223372036854775808"}').toString('base64url')]) {
      const bad = await ta.app.inject({ method: 'GET', url: `/api/v1/user/security-events?cursor=${cursor}`, headers: bearer(access_token) });
      assert.equal(bad.statusCode, 422, cursor);
    }
    assert.equal((await ta.app.inject({ method: 'GET', url: '/api/v1/user/security-events?limit=0', headers: bearer(access_token) })).statusCode, 422);
    // An admin's act on the account: the kind is shown, the admin's id and address are not.
    await recordSecurityEvent(ta.deps.db, { actor: { kind: 'admin', id: other.uuid }, ip: '192.0.2.1', userAgent: 'AdminTool', type: 'admin.action', userId: user.uuid, data: { action: 'unlock' } });
    const latest = (await ta.app.inject({ method: 'GET', url: '/api/v1/user/security-events?limit=1', headers: bearer(access_token) })).json().events[0];
    assert.deepEqual({ type: latest.type, actor: latest.actor, ip: latest.ip, ua: latest.user_agent }, { type: 'admin.action', actor: 'admin', ip: null, ua: null });
  });
});

describeWithApp('audit log under concurrency', (suite) => {
  test('a burst of 30 wrong passwords at once: one login.failed per checked attempt, login.locked exactly once', async (t) => {
    const ta = await suite.build(t, { env: { LOCKOUT_MAX_FAILURES: '5' } });
    const user = await createUser(ta.app);
    const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => login(ta.app, { username: user.username, password: `wrong password number ${i}` })));
    const checked = answers.filter((r) => r.statusCode === 401).length;
    assert.equal(checked, 5, 'the limiter checks at most the limit');
    assert.equal(answers.filter((r) => r.statusCode === 429).length, 25);
    const types = await auditTypesOf(ta, user.uuid);
    assert.equal(types.filter((x) => x === 'login.failed').length, checked);
    assert.equal(types.filter((x) => x === 'login.locked').length, 1);
  });

  test('admin audit pages never repeat or skip while entries are written concurrently', async (t) => {
    const ta = await suite.build(t, { env: { ADMIN_API_KEY: 'test-admin-key-0123456789abcdefghijklmnop' } });
    const user = await createUser(ta.app);
    for (let i = 0; i < 25; i++) await recordSecurityEvent(ta.deps.db, { ...SYSTEM_CONTEXT, type: 'admin.action', userId: user.uuid, data: { n: i } });
    const seen: number[] = [];
    let cursor: string | null = null;
    do {
      const url: string = `/api/v1/admin/audit?user=${user.uuid}&limit=4${cursor ? `&cursor=${cursor}` : ''}`;
      const [page] = await Promise.all([
        ta.app.inject({ method: 'GET', url, headers: bearer('test-admin-key-0123456789abcdefghijklmnop') }),
        // Newer entries arrive while paging; they sort before the cursor and never shift older ones.
        ...Array.from({ length: 10 }, (_, i) => recordSecurityEvent(ta.deps.db, { ...SYSTEM_CONTEXT, type: 'admin.action', userId: user.uuid, data: { n: 1000 + i } })),
      ]);
      const body: { events: Array<{ type: string; data: { n?: number } }>; next_cursor: string | null } = page.json();
      seen.push(...body.events.filter((e) => e.type === 'admin.action').map((e) => e.data.n!));
      cursor = body.next_cursor;
    } while (cursor);
    const old = seen.filter((n) => n < 1000);
    assert.deepEqual(old, Array.from({ length: 25 }, (_, i) => 24 - i), 'every older entry once, newest first');
    assert.equal(new Set(seen).size, seen.length, 'no entry twice');
  });
});
