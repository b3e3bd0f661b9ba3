/**
 * The back-channel logout goes out right after whatever ended the Twofold session, not only after the
 * logout and admin routes: here a first second factor, which ends the user's other sessions (reason
 * `mfa_enabled`). The timer is set to its longest (10 minutes) so only that immediate sweep can
 * deliver the notice within the test's timeout.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as client from 'openid-client';
import { decodeJwt } from 'jose';
import { totpCodeAt } from '../../src/crypto/totp.ts';
import { createUser, describeWithApp } from '../helpers/app.ts';
import { Browser, authorizationStart, browserAuthorize, logoutReceiver, rp, startOidcServer, WEB_APP } from '../helpers/oidc.ts';

describeWithApp('back-channel logout right after any revocation', (suite) => {
  test('turning on a first factor (TOTP) in another browser ends the application sign-in at once: logout token sent, refresh refused', { timeout: 30_000 }, async (t) => {
    const receiver = await logoutReceiver(t);
    const server = await startOidcServer(t, suite, [
      { client_id: WEB_APP.id, client_secret: WEB_APP.secret, redirect_uris: [WEB_APP.callback], grant_types: ['authorization_code', 'refresh_token'], backchannel_logout_uri: receiver.uri, skip_consent: true },
    ], { OIDC_LOGOUT_SWEEP_INTERVAL_MS: '600000' });
    const config = await rp(server, WEB_APP.id, WEB_APP.secret);
    const user = await createUser(server.app);
    const signedIn = new Browser(server.base);
    const start = await authorizationStart(config, WEB_APP.callback, { scope: 'openid offline_access', prompt: 'consent' });
    const flow = await browserAuthorize(signedIn, start.url, user);
    const tokens = await client.authorizationCodeGrant(config, new URL(flow.left), { pkceCodeVerifier: start.verifier, expectedState: start.state, expectedNonce: start.nonce });

    // The same user, in another browser, turns on TOTP: the first browser's session ends (mfa_enabled).
    const other = new Browser(server.base);
    await other.login(user);
    const headers = { authorization: `Bearer ${other.cookies.get('access_token')}`, 'content-type': 'application/json', accept: 'application/json' };
    const enroll = await fetch(`${server.base}/api/v1/auth-totp/enroll`, { method: 'POST', headers, body: '{}' });
    assert.equal(enroll.status, 201);
    const { secret } = await enroll.json() as { secret: string };
    const confirm = await fetch(`${server.base}/api/v1/auth-totp/confirm`, { method: 'POST', headers, body: JSON.stringify({ security_code: totpCodeAt(secret, server.clock()) }) });
    assert.equal(confirm.status, 200);
    const ended = await server.deps.db.query<{ revoked_reason: string | null }>('SELECT revoked_reason FROM sessions WHERE id = $1', [decodeJwt(signedIn.cookies.get('access_token')!).sid]);
    assert.equal(ended.rows[0]!.revoked_reason, 'mfa_enabled');

    // Polls for the notice; the timer cannot send it before the test's timeout.
    await receiver.waitFor(1);
    const logout = decodeJwt(receiver.tokens[0]!);
    assert.equal(logout.sid, tokens.claims()!.sid);
    assert.equal(logout.sub, user.uuid);
    await assert.rejects(client.refreshTokenGrant(config, tokens.refresh_token!), (e: client.ResponseBodyError) => e.error === 'invalid_grant');
    const links = await server.deps.db.query('SELECT 1 FROM oidc_session_links WHERE user_id = $1', [user.uuid]);
    assert.equal(links.rows.length, 0, 'the sweep took the link of the ended session');
  });
});
