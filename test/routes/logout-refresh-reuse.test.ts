/**
 * Logging out with a refresh token that was rotated away is a replay, as at the refresh endpoint: the
 * session ends (204, as the contract says for logout) and the audit log says reuse was detected
 * (refresh.reused, session.revoked for refresh_token_reused), not a plain logout. Within the grace
 * period, and with the current tokens, a logout stays a logout.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bearer, createUser, describeWithApp, loginTokens, type TestApp } from '../helpers/app.ts';
import { auditRowsOf } from '../helpers/admin.ts';

function sidOf(token: string): string {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).sid;
}

function logout(ta: TestApp, refreshToken: string) {
  return ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout', payload: { refresh_token: refreshToken } });
}

function refresh(ta: TestApp, refreshToken: string) {
  return ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: refreshToken } });
}

async function endOf(ta: TestApp, userId: string, sid: string): Promise<{ reason: string | null; types: string[]; revokedReasons: unknown[] }> {
  const row = (await ta.deps.db.query<{ revoked_reason: string | null }>('SELECT revoked_reason FROM sessions WHERE id = $1', [sid])).rows[0];
  const rows = (await auditRowsOf(ta, userId)).filter((r) => r.data?.sid === sid);
  return {
    reason: row?.revoked_reason ?? null,
    types: rows.map((r) => r.type),
    revokedReasons: rows.filter((r) => r.type === 'session.revoked').map((r) => r.data.reason),
  };
}

describeWithApp('logout with a refresh token rotated away', (suite) => {
  test('outside the grace period: 204, the session ends, recorded as reuse and not as a logout', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const first = await loginTokens(ta.app, user);
    const sid = sidOf(first.access_token);
    ta.clock.advance(5);
    const rotated = await refresh(ta, first.refresh_token);
    assert.equal(rotated.statusCode, 200);
    ta.clock.advance(60); // past REFRESH_REUSE_GRACE_SECONDS (10)

    const out = await logout(ta, first.refresh_token);
    assert.equal(out.statusCode, 204);
    const end = await endOf(ta, user.uuid, sid);
    assert.equal(end.reason, 'refresh_token_reused');
    assert.ok(end.types.includes('refresh.reused'), end.types.join());
    assert.deepEqual(end.revokedReasons, ['refresh_token_reused']);
    // The session is over for the holder of the current pair too.
    assert.equal((await refresh(ta, rotated.json().refresh_token)).statusCode, 401);
    // A second replay of the same token records nothing more: the session had already ended.
    assert.equal((await logout(ta, first.refresh_token)).statusCode, 204);
    assert.deepEqual((await endOf(ta, user.uuid, sid)).types, end.types);
  });

  test('with no grace period (REFRESH_REUSE_GRACE_SECONDS=0) any rotated token is reuse', async (t) => {
    const ta = await suite.build(t, { env: { REFRESH_REUSE_GRACE_SECONDS: '0' } });
    const user = await createUser(ta.app);
    const first = await loginTokens(ta.app, user);
    const sid = sidOf(first.access_token);
    assert.equal((await refresh(ta, first.refresh_token)).statusCode, 200);
    assert.equal((await logout(ta, first.refresh_token)).statusCode, 204);
    const end = await endOf(ta, user.uuid, sid);
    assert.equal(end.reason, 'refresh_token_reused');
    assert.deepEqual(end.revokedReasons, ['refresh_token_reused']);
  });

  test('within the grace period, with the current refresh token or an access token: a plain logout', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);

    // Rotated away 3 s ago (another tab refreshed): the client logging out is the owner.
    const a = await loginTokens(ta.app, user);
    ta.clock.advance(60);
    assert.equal((await refresh(ta, a.refresh_token)).statusCode, 200);
    ta.clock.advance(3);
    assert.equal((await logout(ta, a.refresh_token)).statusCode, 204);
    const endA = await endOf(ta, user.uuid, sidOf(a.access_token));
    assert.equal(endA.reason, 'logout');
    assert.deepEqual(endA.revokedReasons, ['logout']);
    assert.ok(!endA.types.includes('refresh.reused'));

    // The current refresh token.
    const b = await loginTokens(ta.app, user);
    ta.clock.advance(60);
    const rotated = await refresh(ta, b.refresh_token);
    ta.clock.advance(60);
    assert.equal((await logout(ta, rotated.json().refresh_token)).statusCode, 204);
    assert.deepEqual((await endOf(ta, user.uuid, sidOf(b.access_token))).revokedReasons, ['logout']);

    // An access token, however old its session's refresh history.
    const c = await loginTokens(ta.app, user);
    ta.clock.advance(60);
    const cRotated = await refresh(ta, c.refresh_token);
    ta.clock.advance(60);
    const out = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout', headers: bearer(cRotated.json().access_token) });
    assert.equal(out.statusCode, 204);
    assert.deepEqual((await endOf(ta, user.uuid, sidOf(c.access_token))).revokedReasons, ['logout']);
  });

  test('a logout and a refresh of the same current token at once: never taken for reuse (dozens of times)', async (t) => {
    const ta = await suite.build(t, { env: { RATE_LIMIT_DISABLED: 'true' } });
    const user = await createUser(ta.app);
    const sessions = await Promise.all(Array.from({ length: 24 }, () => loginTokens(ta.app, user)));
    // Issued long ago, so only the session's rotation record (not the token's age) shows a token
    // rotated away by the concurrent refresh as within the grace period.
    ta.clock.advance(120);
    const answers = await Promise.all(sessions.flatMap((s) => [logout(ta, s.refresh_token), refresh(ta, s.refresh_token)]));
    for (const [i, r] of answers.entries()) assert.ok(i % 2 === 1 || r.statusCode === 204, `logout ${i}: ${r.statusCode} ${r.body}`);
    for (const s of sessions) {
      const end = await endOf(ta, user.uuid, sidOf(s.access_token));
      assert.equal(end.reason, 'logout');
      assert.deepEqual(end.revokedReasons, ['logout']);
      assert.ok(!end.types.includes('refresh.reused'));
    }
  });
});
