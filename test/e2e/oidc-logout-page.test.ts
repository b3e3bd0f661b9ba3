/**
 * An application's logout page (RP-initiated logout) names the account it logs out. On a shared
 * computer, A signed in to an application, then B logged in to the hosted pages: the page ends A's
 * sign-in, and must tell B that B's own session stays (it said "This ends your session here", B
 * clicked, and stayed signed in believing otherwise).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as client from 'openid-client';
import { createUser, describeWithApp } from '../helpers/app.ts';
import { Browser, authorizationStart, browserAuthorize, startWebAppServer, WEB_APP } from '../helpers/oidc.ts';

describeWithApp('the application logout page', (suite) => {
  test('names the account it ends, and says so when the browser is signed in as someone else', async (t) => {
    const { server, config } = await startWebAppServer(t, suite);
    const alice = await createUser(server.app);
    const bob = await createUser(server.app);
    const browser = new Browser(server.base);
    const start = await authorizationStart(config, WEB_APP.callback, { scope: 'openid' });
    const flow = await browserAuthorize(browser, start.url, alice);
    const tokens = await client.authorizationCodeGrant(config, new URL(flow.left), { pkceCodeVerifier: start.verifier, expectedState: start.state, expectedNonce: start.nonce });
    const endUrl = client.buildEndSessionUrl(config, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: WEB_APP.afterLogout });

    const own = await (await browser.request(endUrl.href)).text();
    assert.match(own, new RegExp(`ends the session of <strong>${alice.username}</strong>`));
    assert.doesNotMatch(own, /You are signed in here as/);

    await browser.login(bob);
    const shared = await (await browser.request(endUrl.href)).text();
    assert.match(shared, new RegExp(`ends the session of <strong>${alice.username}</strong>`));
    assert.match(shared, new RegExp(`You are signed in here as <strong>${bob.username}</strong>: that stays`));
  });
});
