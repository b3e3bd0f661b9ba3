import assert from 'node:assert/strict';
import { test } from 'node:test';
import { totpCodeAt } from '../../src/crypto/totp.ts';
import { grantRole } from '../../src/services/admin/roles.ts';
import { SYSTEM_CONTEXT } from '../../src/services/audit/record.ts';
import { PASSWORD, bearer, createUser, describeWithApp, enableTotp, login, loginTokens, uniqueName } from '../helpers/app.ts';
import { ADMIN_ENV, adminCall, auditRowsOf, createAdmin } from '../helpers/admin.ts';
import { latestToken } from '../helpers/mail-links.ts';

const USERS = '/api/v1/admin/users';

function claimsOf(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());
}

function userInfo(ta: { app: { inject: (o: object) => Promise<{ statusCode: number; json: () => { code?: string } }> } }, token: string) {
  return ta.app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(token) });
}

describeWithApp('admin users API', (suite) => {
  test('create with roles and a vouched address; same rules as sign-up; user.created names the admin', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const admin = await createAdmin(ta);
    const username = uniqueName('made');
    const body = { username, email: `${username}@example.com`, password1: PASSWORD, password2: PASSWORD, roles: ['support', 'billing:read'], email_verified: true };
    const res = await adminCall(ta, 'POST', USERS, body, admin.token);
    assert.equal(res.statusCode, 201, res.body);
    const created = res.json();
    assert.deepEqual(created.roles, ['billing:read', 'support']);
    assert.equal(created.email_verified, true);
    assert.equal(created.is_active, true);
    assert.deepEqual(created.mfa, { totp: false, email: false, passkeys: 0, backup_codes_remaining: 0 });
    assert.equal(created.password_hash, undefined);
    assert.equal(ta.mail.sent.filter((m) => m.to === body.email).length + (await ta.deliverMail()).filter((m) => m.to === body.email && m.kind === 'verify_email').length, 0, 'no verification mail for a vouched address');
    const [entry] = await auditRowsOf(ta, created.uuid);
    assert.equal(entry?.type, 'user.created');
    assert.equal(entry?.actor_kind, 'admin');
    assert.equal(entry?.actor_id, admin.uuid);
    // The role is in the next token.
    const tokens = await loginTokens(ta.app, { uuid: created.uuid, username, email: body.email, password: PASSWORD });
    assert.deepEqual(claimsOf(tokens.access_token).roles, ['billing:read', 'support']);

    assert.equal((await adminCall(ta, 'POST', USERS, body)).json().code, 'username_taken');
    for (const roles of [['Admin'], ['1st'], ['has space'], ['a'.repeat(65)], ['']]) {
      const bad = await adminCall(ta, 'POST', USERS, { ...body, username: uniqueName(), email: `${uniqueName()}@example.com`, roles });
      assert.equal(bad.statusCode, 422, JSON.stringify(roles));
      assert.equal(bad.json().code, 'validation_failed');
    }
    const weak = await adminCall(ta, 'POST', USERS, { ...body, username: uniqueName(), email: `${uniqueName()}@example.com`, password1: 'password', password2: 'password' });
    assert.equal(weak.statusCode, 422);
  });

  test('e-mailed codes chosen at sign-up start when the admin vouches for the address (at creation or by PATCH)', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const username = uniqueName('vouched');
    const created = await adminCall(ta, 'POST', USERS, { username, email: `${username}@example.com`, password1: PASSWORD, password2: PASSWORD, mfa: 'email', email_verified: true });
    assert.equal(created.statusCode, 201, created.body);
    assert.equal(created.json().mfa.email, true);
    assert.deepEqual((await auditRowsOf(ta, created.json().uuid)).map((r) => [r.type, r.actor_kind]), [['user.created', 'api_key'], ['email.verified', 'api_key'], ['mfa.enabled', 'api_key']]);
    const later = await createUser(ta.app, { mfa: 'email' });
    assert.equal((await adminCall(ta, 'GET', `${USERS}/${later.uuid}`)).json().mfa.email, false);
    const patched = await adminCall(ta, 'PATCH', `${USERS}/${later.uuid}`, { email_verified: true });
    assert.equal(patched.json().mfa.email, true);
    assert.equal((await login(ta.app, { username: later.username, password: later.password })).json().code, 'mfa_required');
  });

  test('read with sessions; 404 user_not_found for unknown or malformed ids', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const user = await createUser(ta.app);
    await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login', payload: { username: user.username, password: user.password }, headers: { 'user-agent': 'Phone/1' }, remoteAddress: '203.0.113.5' });
    const res = await adminCall(ta, 'GET', `${USERS}/${user.uuid}`);
    assert.equal(res.statusCode, 200);
    const body = res.json();
    assert.equal(body.username, user.username);
    assert.equal(body.sessions.length, 1);
    assert.equal(body.sessions[0].user_agent, 'Phone/1');
    assert.equal(body.sessions[0].ip, '203.0.113.5');
    assert.equal(body.last_login_at, ta.clock().toISOString());
    assert.equal(body.locked_until, null);
    for (const id of ['00000000-0000-4000-8000-000000000000', 'not-a-uuid', "1' OR '1'='1", 'a'.repeat(100), 'a'.repeat(300)]) {
      const missing = await adminCall(ta, 'GET', `${USERS}/${encodeURIComponent(id)}`);
      assert.equal(missing.statusCode, 404, id);
      assert.equal(missing.json().code, 'user_not_found', id);
      assert.equal((await adminCall(ta, 'PATCH', `${USERS}/${encodeURIComponent(id)}`, { is_active: false })).json().code, 'user_not_found', id);
      assert.equal((await adminCall(ta, 'DELETE', `${USERS}/${encodeURIComponent(id)}`)).json().code, 'user_not_found', id);
    }
  });

  test('PATCH: deactivation refuses live tokens at once and ends sessions; roles reach the next token; one user.updated', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const user = await createUser(ta.app);
    const tokens = await loginTokens(ta.app, user);
    assert.deepEqual(claimsOf(tokens.access_token).roles, []);
    const roles = await adminCall(ta, 'PATCH', `${USERS}/${user.uuid}`, { roles: ['editor'] });
    assert.equal(roles.statusCode, 200);
    assert.deepEqual(roles.json().roles, ['editor']);
    assert.deepEqual(claimsOf(tokens.access_token).roles, [], 'the old token keeps its claim');
    const refreshed = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: tokens.refresh_token } });
    assert.equal(refreshed.statusCode, 200);
    assert.deepEqual(claimsOf(refreshed.json().access_token).roles, ['editor'], 'the next token carries the role');

    const live = refreshed.json();
    assert.equal((await userInfo(ta, live.access_token)).statusCode, 200);
    const off = await adminCall(ta, 'PATCH', `${USERS}/${user.uuid}`, { is_active: false, email_verified: true });
    assert.equal(off.statusCode, 200);
    assert.equal(off.json().is_active, false);
    assert.deepEqual(off.json().sessions, []);
    const refused = await userInfo(ta, live.access_token);
    assert.ok(refused.statusCode === 401 || refused.statusCode === 403, String(refused.statusCode));
    const refresh = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: live.refresh_token } });
    assert.equal(refresh.statusCode, 401, 'deactivation revoked the session: the refresh token is invalid (the contract lists only 401s)');
    assert.equal(refresh.json().code, 'invalid_token');
    assert.equal(refresh.json().access_token, undefined);
    assert.equal((await login(ta.app, { username: user.username, password: user.password })).json().code, 'account_inactive');

    const rows = await auditRowsOf(ta, user.uuid);
    const updates = rows.filter((r) => r.type === 'user.updated');
    assert.equal(updates.length, 2);
    assert.deepEqual(updates[1]!.data, { changes: { email_verified: { from: false, to: true }, is_active: { from: true, to: false } } });
    assert.equal(updates[1]!.actor_kind, 'api_key');
    assert.ok(rows.some((r) => r.type === 'session.revoked' && r.data.reason === 'deactivated'));
    // An unchanged PATCH records nothing.
    await adminCall(ta, 'PATCH', `${USERS}/${user.uuid}`, { is_active: false });
    assert.equal((await auditRowsOf(ta, user.uuid)).filter((r) => r.type === 'user.updated').length, 2);
    assert.equal((await adminCall(ta, 'PATCH', `${USERS}/${user.uuid}`, { roles: ['Bad Role'] })).statusCode, 422);

    const on = await adminCall(ta, 'PATCH', `${USERS}/${user.uuid}`, { is_active: true });
    assert.equal(on.json().is_active, true);
    assert.equal((await login(ta.app, { username: user.username, password: user.password })).statusCode, 200);
  });

  test('an e-mail verification link does not undo an admin deactivation (REQUIRE_EMAIL_VERIFICATION=true)', async (t) => {
    const ta = await suite.build(t, { env: { ...ADMIN_ENV, REQUIRE_EMAIL_VERIFICATION: 'true' } });
    const user = await createUser(ta.app);
    const token = await latestToken(ta, user.email, 'verify_email');
    assert.equal((await adminCall(ta, 'PATCH', `${USERS}/${user.uuid}`, { is_active: false })).statusCode, 200);
    // Reported as the admin's mark, not as is_active going from false to false.
    const [update] = (await auditRowsOf(ta, user.uuid)).filter((r) => r.type === 'user.updated');
    assert.deepEqual(update!.data, { changes: { deactivated: { from: false, to: true } } });
    assert.equal((await ta.app.inject({ method: 'POST', url: '/api/v1/user/email/verify', payload: { token } })).statusCode, 200);
    const after = (await adminCall(ta, 'GET', `${USERS}/${user.uuid}`)).json();
    assert.equal(after.email_verified, true);
    assert.equal(after.is_active, false, 'still deactivated');
  });

  test('vouching for the address (PATCH email_verified) activates an account inactive until verified, not a deactivated one (REQUIRE_EMAIL_VERIFICATION=true)', async (t) => {
    const ta = await suite.build(t, { env: { ...ADMIN_ENV, REQUIRE_EMAIL_VERIFICATION: 'true' } });
    const waiting = await createUser(ta.app);
    assert.equal((await login(ta.app, { username: waiting.username, password: waiting.password })).json().code, 'email_not_verified');
    const patched = await adminCall(ta, 'PATCH', `${USERS}/${waiting.uuid}`, { email_verified: true });
    assert.deepEqual({ verified: patched.json().email_verified, active: patched.json().is_active }, { verified: true, active: true });
    assert.equal((await login(ta.app, { username: waiting.username, password: waiting.password })).statusCode, 200);
    const [update] = (await auditRowsOf(ta, waiting.uuid)).filter((r) => r.type === 'user.updated');
    assert.deepEqual(update!.data, { changes: { email_verified: { from: false, to: true }, is_active: { from: false, to: true } } });

    const deactivated = await createUser(ta.app);
    assert.equal((await adminCall(ta, 'PATCH', `${USERS}/${deactivated.uuid}`, { is_active: false })).statusCode, 200);
    const vouched = (await adminCall(ta, 'PATCH', `${USERS}/${deactivated.uuid}`, { email_verified: true })).json();
    assert.deepEqual({ verified: vouched.email_verified, active: vouched.is_active }, { verified: true, active: false });
  });

  test('with ADMIN_API_KEY the last admin may go: the key still reaches the admin API', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const only = await createAdmin(ta);
    assert.equal((await adminCall(ta, 'PATCH', `${USERS}/${only.uuid}`, { roles: [] })).statusCode, 200);
  });

  test('DELETE erases the user, factors, sessions, codes and pending mail; tokens die; audit keeps the uuid', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const user = await createUser(ta.app);
    const { tokens } = await enableTotp(ta, user);
    await ta.app.inject({ method: 'POST', url: '/api/v1/user/password/forgot', payload: { email: user.email } });
    const { settleDeferred } = await import('../../src/services/deferred.ts');
    await settleDeferred(ta.deps);
    assert.ok((await ta.deps.db.query('SELECT 1 FROM outbox WHERE to_address = $1', [user.email])).rows.length > 0, 'mail waiting');
    const res = await adminCall(ta, 'DELETE', `${USERS}/${user.uuid}`);
    assert.equal(res.statusCode, 204);
    for (const table of ['users WHERE id', 'sessions WHERE user_id', 'totp_factors WHERE user_id', 'backup_codes WHERE user_id', 'email_tokens WHERE user_id', 'mfa_challenges WHERE user_id', 'email_otps WHERE user_id']) {
      assert.equal((await ta.deps.db.query(`SELECT 1 FROM ${table} = $1`, [user.uuid])).rows.length, 0, table);
    }
    assert.equal((await ta.deps.db.query('SELECT 1 FROM outbox WHERE lower(to_address) = lower($1)', [user.email])).rows.length, 0, 'no mail body left');
    assert.equal((await userInfo(ta, tokens.access_token)).statusCode, 401);
    const rows = await auditRowsOf(ta, user.uuid);
    assert.equal(rows.at(-1)?.type, 'user.deleted');
    assert.ok(!JSON.stringify(rows.at(-1)?.data).includes(user.email));
    assert.equal((await adminCall(ta, 'DELETE', `${USERS}/${user.uuid}`)).statusCode, 404);
    // The name is free again.
    const again = await createUser(ta.app, { username: user.username, email: user.email });
    assert.notEqual(again.uuid, user.uuid);
  });

  test('DELETE sessions ends every session at once', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const user = await createUser(ta.app);
    const a = await loginTokens(ta.app, user);
    const b = await loginTokens(ta.app, user);
    assert.equal((await adminCall(ta, 'DELETE', `${USERS}/${user.uuid}/sessions`)).statusCode, 204);
    for (const tk of [a, b]) assert.equal((await userInfo(ta, tk.access_token)).statusCode, 401);
    const rows = await auditRowsOf(ta, user.uuid);
    assert.equal(rows.filter((r) => r.type === 'session.revoked' && r.data.reason === 'revoked_by_admin').length, 2);
    assert.ok(rows.some((r) => r.type === 'admin.action' && r.data.action === 'revoke_sessions'));
  });

  test('DELETE mfa: every factor and backup code gone, the user is mailed, a password logs in again', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const user = await createUser(ta.app);
    const { secret, backupCodes } = await enableTotp(ta, user);
    assert.equal((await login(ta.app, { username: user.username, password: user.password })).json().code, 'mfa_required');
    // A passkey on the lost device goes too.
    await ta.deps.db.query(
      `INSERT INTO passkeys (id, user_id, credential_id, public_key, device_type, backed_up, aaguid, name, created_at)
       VALUES (gen_random_uuid(), $1, $2, 'pk', 'singleDevice', false, '00000000-0000-0000-0000-000000000000', 'Phone', now())`,
      [user.uuid, `cred-${user.uuid}`],
    );
    assert.equal((await adminCall(ta, 'GET', `${USERS}/${user.uuid}`)).json().mfa.passkeys, 1);
    const res = await adminCall(ta, 'DELETE', `${USERS}/${user.uuid}/mfa`);
    assert.equal(res.statusCode, 204);
    const view = (await adminCall(ta, 'GET', `${USERS}/${user.uuid}`)).json();
    assert.deepEqual(view.mfa, { totp: false, email: false, passkeys: 0, backup_codes_remaining: 0 });
    const mails = (await ta.deliverMail()).filter((m) => m.to === user.email && m.kind === 'mfa_reset');
    assert.equal(mails.length, 1);
    assert.ok(!mails[0]!.text.includes(secret));
    const ok = await login(ta.app, { username: user.username, password: user.password });
    assert.equal(ok.statusCode, 200);
    assert.equal((await login(ta.app, { username: user.username, password: user.password, backup_code: backupCodes[0]! })).statusCode, 401, 'old backup codes are void');
    assert.equal((await login(ta.app, { username: user.username, password: user.password, security_code: totpCodeAt(secret, ta.clock()) })).statusCode, 401, 'the old secret is gone');
    const disabled = (await auditRowsOf(ta, user.uuid)).find((r) => r.type === 'mfa.disabled');
    assert.deepEqual(disabled?.data, { methods: ['totp', 'passkey'], backups_removed: 10, reset: true });
    const removedKeys = (await auditRowsOf(ta, user.uuid)).filter((r) => r.type === 'passkey.removed');
    assert.deepEqual(removedKeys.map((r) => (r.data as { name: string; reset: boolean })).map((d) => [d.name, d.reset]), [['Phone', true]], 'each removed passkey announced');

    // Again, with nothing left: the admin's action is recorded, but no factor was turned off, so no
    // mfa.disabled and no mail saying so.
    assert.equal((await adminCall(ta, 'DELETE', `${USERS}/${user.uuid}/mfa`)).statusCode, 204);
    const rows = await auditRowsOf(ta, user.uuid);
    assert.equal(rows.filter((r) => r.type === 'mfa.disabled').length, 1);
    assert.equal(rows.filter((r) => r.type === 'admin.action' && (r.data as { action?: string }).action === 'reset_mfa').length, 2);
    assert.equal((await ta.deliverMail()).filter((m) => m.to === user.email && m.kind === 'mfa_reset').length, 1);
  });

  test('unlock clears the locks of the username, the e-mail and the id; locked_until shows the lock', async (t) => {
    const ta = await suite.build(t, { env: { ...ADMIN_ENV, LOCKOUT_MAX_FAILURES: '3' } });
    const user = await createUser(ta.app);
    for (let i = 0; i < 3; i++) await login(ta.app, { username: user.username, password: `wrong ${i} wrong wrong` });
    for (let i = 0; i < 3; i++) await login(ta.app, { username: user.email, password: `wrong ${i} wrong wrong` });
    assert.equal((await login(ta.app, { username: user.username, password: user.password })).statusCode, 429);
    assert.equal((await login(ta.app, { username: user.email, password: user.password })).statusCode, 429);
    const locked = (await adminCall(ta, 'GET', `${USERS}/${user.uuid}`)).json();
    assert.ok(locked.locked_until !== null && Date.parse(locked.locked_until) > Date.now());
    assert.equal((await adminCall(ta, 'POST', `${USERS}/${user.uuid}/unlock`)).statusCode, 204);
    assert.equal((await adminCall(ta, 'GET', `${USERS}/${user.uuid}`)).json().locked_until, null);
    assert.equal((await login(ta.app, { username: user.email, password: user.password })).statusCode, 200);
    assert.equal((await login(ta.app, { username: user.username, password: user.password })).statusCode, 200);
    assert.ok((await auditRowsOf(ta, user.uuid)).some((r) => r.type === 'admin.action' && r.data.action === 'unlock'));
  });

  test('concurrent grants of different roles all land (the user row is locked per change)', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const user = await createUser(ta.app);
    const roles = Array.from({ length: 20 }, (_, i) => `role${i}`);
    await Promise.all(roles.map((r) => grantRole(ta.deps, user.uuid, r, SYSTEM_CONTEXT)));
    const view = (await adminCall(ta, 'GET', `${USERS}/${user.uuid}`)).json();
    assert.deepEqual(view.roles, [...roles].sort());
    // And 20 concurrent deactivate/reactivate PATCHes leave a consistent row and one entry per real change.
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => adminCall(ta, 'PATCH', `${USERS}/${user.uuid}`, { is_active: i % 2 === 1 })));
    assert.ok(results.every((r) => r.statusCode === 200));
    const updates = (await auditRowsOf(ta, user.uuid)).filter((r) => r.type === 'user.updated' && (r.data.changes as Record<string, unknown>).is_active !== undefined);
    let state = true;
    for (const u of updates) {
      const change = (u.data.changes as Record<string, { from: boolean; to: boolean }>).is_active!;
      assert.equal(change.from, state, 'each entry starts where the previous ended');
      state = change.to;
    }
    assert.equal((await adminCall(ta, 'GET', `${USERS}/${user.uuid}`)).json().is_active, state);
  });
});

// A database of its own: the count of admins is the whole table's.
describeWithApp('the last admin', (suite) => {
  test('without ADMIN_API_KEY the last active admin cannot be demoted, deactivated or deleted, even by admins demoting themselves all at once', async (t) => {
    const ta = await suite.build(t);
    const admins = [];
    for (let i = 0; i < 5; i++) admins.push(await createAdmin(ta));
    const results = await Promise.all(admins.map((a) => adminCall(ta, 'PATCH', `${USERS}/${a.uuid}`, { roles: [] }, a.token)));
    assert.deepEqual(results.map((r) => r.statusCode).sort(), [200, 200, 200, 200, 409]);
    const refused = results.find((r) => r.statusCode === 409)!;
    assert.equal(refused.json().code, 'last_admin');
    const left = await ta.deps.db.query<{ id: string }>(`SELECT id FROM users WHERE 'admin' = ANY (roles) AND is_active`);
    assert.equal(left.rows.length, 1, 'exactly one admin is left');
    const last = admins.find((a) => a.uuid === left.rows[0]!.id)!;
    for (const [method, url, body] of [['PATCH', `${USERS}/${last.uuid}`, { is_active: false }], ['DELETE', `${USERS}/${last.uuid}`, undefined]] as const) {
      const res = await adminCall(ta, method, url, body, last.token);
      assert.equal(res.statusCode, 409, method);
      assert.equal(res.json().code, 'last_admin');
    }
    // Another admin first, then the change goes through.
    const other = admins.find((a) => a !== last)!;
    assert.equal((await adminCall(ta, 'PATCH', `${USERS}/${other.uuid}`, { roles: ['admin'] }, last.token)).statusCode, 200);
    assert.equal((await adminCall(ta, 'PATCH', `${USERS}/${last.uuid}`, { roles: [] }, last.token)).statusCode, 200);
  });
});
