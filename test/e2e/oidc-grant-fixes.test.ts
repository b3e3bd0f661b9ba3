/**
 * Grants belong to one client and one decision: a client of OIDC_CLIENTS_FILE never takes over what a
 * client registered through the admin API under the same id was granted (consents, grants, refresh
 * tokens, its place in provider sessions); and a consent interaction is decided once, however many
 * submissions of it arrive at the same time (one grant, one audit entry).
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import * as client from 'openid-client';
import { createUser, describeWithApp, type AppSuite, type TestUser } from '../helpers/app.ts';
import { Browser, authorizationStart, browserAuthorize, rp, startOidcServer, type OidcServer } from '../helpers/oidc.ts';
import { decideConsentInteraction } from '../../src/services/oidc/consent.ts';

const ADMIN_KEY = 'admin-key-0123456789abcdef-0123456789';
const admin = { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' };
const CALLBACK = 'http://app.example.test/callback';
const SECRET = 'consent-app-secret-0123456789abcdef';
/** A confidential client that asks for consent (no skip_consent). */
const CONSENT_APP = { client_id: 'consent-app', client_secret: SECRET, redirect_uris: [CALLBACK], grant_types: ['authorization_code', 'refresh_token'] };
/** Simultaneous requests per test: enough to overlap on two cores and on a PostgreSQL pool. */
const CONCURRENT = 30;

async function count(server: OidcServer, sql: string, params: unknown[]): Promise<number> {
  return Number((await server.deps.db.query<{ n: string | number }>(sql, params)).rows[0]!.n);
}

const grantsOf = (server: OidcServer, user: TestUser) =>
  count(server, "SELECT count(*) AS n FROM oidc_payloads WHERE kind = 'Grant' AND account_id = $1 AND client_id = $2", [user.uuid, CONSENT_APP.client_id]);
const consentAudits = (server: OidcServer, user: TestUser) =>
  count(server, "SELECT count(*) AS n FROM audit_log WHERE type = 'oidc.consent_granted' AND user_id = $1", [user.uuid]);

/** The prompt of interaction `uid` (read from the table: opening it would finish a remembered consent). */
async function promptOf(server: OidcServer, uid: string): Promise<string | undefined> {
  const r = await server.deps.db.query<{ name: string }>("SELECT payload->'prompt'->>'name' AS name FROM oidc_payloads WHERE kind = 'Interaction' AND id = $1", [server.deps.tokenHasher.hash('oidc-id', uid)]);
  return r.rows[0]?.name;
}

/** Runs the authorization at `url` (logging in when asked) up to its consent interaction, unopened; its path. */
async function openConsent(server: OidcServer, browser: Browser, url: string, user: TestUser): Promise<string> {
  let next: string | null = url;
  for (let i = 0; i < 10 && next; i++) {
    const u: URL = new URL(next, browser.base);
    const uid = /^\/oidc\/interaction\/([^/]+)$/.exec(u.pathname)?.[1];
    if (uid && (await promptOf(server, uid)) === 'consent') return u.pathname;
    if (u.pathname === '/login') {
      await browser.login(user);
      next = u.searchParams.get('return_to');
      continue;
    }
    next = (await browser.request(u.href)).headers.get('location');
  }
  return assert.fail(`no consent interaction reached (at ${next})`);
}

/** Follows `location` to the application and exchanges the code; the tokens. */
async function finishAt(browser: Browser, location: string, config: client.Configuration, start: Awaited<ReturnType<typeof authorizationStart>>) {
  const step = await browser.follow(new URL(location, browser.base).href);
  assert.ok(step.left, `back to the application: ${step.res.status} ${step.url}`);
  return client.authorizationCodeGrant(config, new URL(step.left), { pkceCodeVerifier: start.verifier, expectedState: start.state, expectedNonce: start.nonce });
}

describeWithApp('an admin-API client id put in OIDC_CLIENTS_FILE', (suite) => {
  test('stops the start while the API client exists; once it is deleted the file client starts with none of its consents, tokens or provider-session places', async (t) => {
    const a = await startOidcServer(t, suite, [], { ADMIN_API_KEY: ADMIN_KEY });
    const created = await fetch(`${a.base}/api/v1/admin/oidc-clients`, { method: 'POST', headers: admin, body: JSON.stringify({ client_id: 'wiki', redirect_uris: [CALLBACK], grant_types: ['authorization_code', 'refresh_token'] }) });
    assert.equal(created.status, 201);
    const apiConfig = await rp(a, 'wiki', ((await created.json()) as { client_secret: string }).client_secret);
    const user = await createUser(a.app);
    const browser = new Browser(a.base);
    const start = await authorizationStart(apiConfig, CALLBACK, { scope: 'openid offline_access', prompt: 'consent' });
    const flow = await browserAuthorize(browser, start.url, user);
    assert.equal(flow.sawConsent, true);
    const apiTokens = await client.authorizationCodeGrant(apiConfig, new URL(flow.left), { pkceCodeVerifier: start.verifier, expectedState: start.state, expectedNonce: start.nonce });
    assert.ok(apiTokens.refresh_token);

    // The operator puts `wiki` in the file, e.g. for another application: the start stops, naming the entry.
    const fileWiki = { client_id: 'wiki', client_secret: 'w'.repeat(32), redirect_uris: [CALLBACK], grant_types: ['authorization_code', 'refresh_token'] };
    await assert.rejects(startOidcServer(t, suite, [fileWiki], { ADMIN_API_KEY: ADMIN_KEY }, { sameTokenHashKeyAs: a }),
      /^ConfigError: OIDC_CLIENTS_FILE: \[0\]\.client_id "wiki" is taken by a client registered through the admin API[^\n]*DELETE \/api\/v1\/admin\/oidc-clients\/wiki[^\n]*$/);
    // Refusing changed nothing: the API client's tokens still work.
    const refreshed = await client.refreshTokenGrant(apiConfig, apiTokens.refresh_token!);
    assert.ok(refreshed.refresh_token);

    assert.equal((await fetch(`${a.base}/api/v1/admin/oidc-clients/wiki`, { method: 'DELETE', headers: { authorization: admin.authorization } })).status, 204);
    const places = await count(a, "SELECT count(*) AS n FROM oidc_payloads WHERE kind = 'Session' AND account_id = $1 AND payload->'authorizations' ? 'wiki'", [user.uuid]);
    assert.equal(places, 0, 'the provider session keeps no place (sid, grant) of the deleted client');

    const b = await startOidcServer(t, suite, [fileWiki], { ADMIN_API_KEY: ADMIN_KEY }, { sameTokenHashKeyAs: a });
    const fileConfig = await rp(b, 'wiki', fileWiki.client_secret);
    for (const token of [apiTokens.refresh_token!, refreshed.refresh_token!]) {
      await assert.rejects(client.refreshTokenGrant(fileConfig, token), (e: client.ResponseBodyError) => e.error === 'invalid_grant', "the API client's refresh token");
    }
    // The same browser, single sign-on through its provider session: consent is asked, and the sid is new.
    const browserB = new Browser(b.base);
    for (const [name, value] of browser.cookies) browserB.cookies.set(name, value);
    const again = await authorizationStart(fileConfig, CALLBACK, { scope: 'openid offline_access' });
    const second = await browserAuthorize(browserB, again.url, user);
    assert.equal(second.sawLogin, false, 'single sign-on (the provider session was found)');
    assert.equal(second.sawConsent, true, 'the file client asks for consent');
    const fileTokens = await client.authorizationCodeGrant(fileConfig, new URL(second.left), { pkceCodeVerifier: again.verifier, expectedState: again.state, expectedNonce: again.nonce });
    assert.notEqual(fileTokens.claims()!.sid, apiTokens.claims()!.sid, 'the file client does not get the API client\'s sid');
  });
});

/** CONSENT_APP on a server of its own, and a user's authorization (`scope`, prompt=consent) stopped at its unopened consent interaction. */
async function atConsent(t: TestContext, suite: AppSuite, scope?: string) {
  const server = await startOidcServer(t, suite, [CONSENT_APP]);
  const config = await rp(server, CONSENT_APP.client_id, SECRET);
  const user = await createUser(server.app);
  const browser = new Browser(server.base);
  const start = await authorizationStart(config, CALLBACK, { ...(scope ? { scope } : {}), prompt: 'consent' });
  return { server, config, user, browser, start, path: await openConsent(server, browser, start.url, user) };
}

describeWithApp('a consent interaction submitted many times at once', (suite) => {
  test(`${CONCURRENT} simultaneous confirmations: one grant, one audit entry, and the application gets its code`, async (t) => {
    const { server, config, user, browser, start, path } = await atConsent(t, suite, 'openid offline_access');
    const answers = await Promise.all(Array.from({ length: CONCURRENT }, () => browser.request(`${path}/confirm`, { method: 'POST' })));
    assert.deepEqual([...new Set(answers.map((r) => r.status))], [303], 'every submission continues the sign-in');
    const locations = new Set(answers.map((r) => r.headers.get('location')));
    assert.equal(locations.size, 1, 'all to the one resume of the interaction');
    assert.equal(await grantsOf(server, user), 1, 'one grant');
    assert.equal(await consentAudits(server, user), 1, 'one oidc.consent_granted entry');
    const tokens = await finishAt(browser, [...locations][0]!, config, start);
    assert.equal(tokens.claims()!.sub, user.uuid);
    assert.ok((await client.refreshTokenGrant(config, tokens.refresh_token!)).access_token, 'the grant saved is the one the tokens use');
    assert.equal(await grantsOf(server, user), 1);
  });

  test(`${CONCURRENT} simultaneous loads of an interaction whose consent is remembered: one grant`, async (t) => {
    const server = await startOidcServer(t, suite, [CONSENT_APP]);
    const config = await rp(server, CONSENT_APP.client_id, SECRET);
    const user = await createUser(server.app);
    const first = await authorizationStart(config, CALLBACK);
    assert.equal((await browserAuthorize(new Browser(server.base), first.url, user)).sawConsent, true);
    assert.equal(await grantsOf(server, user), 1);
    // Another browser: a new provider session, so the engine asks for consent, which is remembered.
    const browser = new Browser(server.base);
    const start = await authorizationStart(config, CALLBACK);
    const path = await openConsent(server, browser, start.url, user);
    const answers = await Promise.all(Array.from({ length: CONCURRENT }, () => browser.request(path)));
    assert.deepEqual([...new Set(answers.map((r) => r.status))], [303]);
    assert.equal(await grantsOf(server, user), 2, 'one grant more');
    assert.equal(await consentAudits(server, user), 1, 'remembered: no new entry');
    const tokens = await finishAt(browser, answers[0]!.headers.get('location')!, config, start);
    assert.equal(tokens.claims()!.sub, user.uuid);
  });

  test('confirmations and refusals at once: the first decision holds, and what is saved matches what the application gets', async (t) => {
    const { server, user, browser, path } = await atConsent(t, suite);
    const answers = await Promise.all(Array.from({ length: CONCURRENT }, (_, i) => browser.request(`${path}/${i % 2 ? 'abort' : 'confirm'}`, { method: 'POST' })));
    assert.deepEqual([...new Set(answers.map((r) => r.status))], [303]);
    const step = await browser.follow(new URL(answers[0]!.headers.get('location')!, browser.base).href);
    assert.ok(step.left);
    const denied = new URL(step.left).searchParams.get('error') === 'access_denied';
    assert.equal(await grantsOf(server, user), denied ? 0 : 1);
    assert.equal(await consentAudits(server, user), denied ? 0 : 1, denied ? 'refused: no consent recorded' : 'allowed: one entry');
  });

  test('a submission that loses to one still saving its result waits for it, and its redirect finishes the sign-in', async (t) => {
    const { server, config, user, browser, start, path } = await atConsent(t, suite);
    const uid = path.split('/').pop()!;
    // The decider: its claim committed, its result not saved yet.
    assert.equal(await decideConsentInteraction(server.deps, uid, { userId: user.uuid, clientId: CONSENT_APP.client_id, scopes: ['openid'], client: { ip: null, userAgent: null } }), true);
    const { provider } = await server.app.oidc.engine.get();
    const Interaction = provider.Interaction as unknown as { find(id: string): Promise<{ result?: unknown; lastSubmission?: object; prompt: { details: { missingOIDCScope?: string[] } }; exp: number; save(ttl: number): Promise<string> } | undefined> };
    const realFind = Interaction.find.bind(Interaction);
    let looks = 0;
    Interaction.find = async (id: string) => {
      if (id === uid) looks += 1;
      return realFind(id);
    };
    t.after(() => {
      Interaction.find = realFind;
    });
    let answered = false;
    const loser = browser.request(`${path}/confirm`, { method: 'POST' }).then((r) => {
      answered = true;
      return r;
    });
    // Its own read of the interaction, then it looks for the decider's result (the test runner's timeout bounds this).
    while (looks < 3 && !answered) await new Promise((r) => setTimeout(r, 10));
    assert.equal(answered, false, 'the losing submission answered before the decision it lost to was saved');
    // The decider saves its result, as the engine's interactionResult does.
    const interaction = (await realFind(uid))!;
    const grant = new provider.Grant({ accountId: user.uuid, clientId: CONSENT_APP.client_id });
    grant.addOIDCScope(interaction.prompt.details.missingOIDCScope!.join(' '));
    interaction.result = { ...interaction.lastSubmission, consent: { grantId: await grant.save() } };
    await interaction.save(interaction.exp - Math.floor(Date.now() / 1000));
    const answer = await loser;
    assert.equal(answer.status, 303);
    const tokens = await finishAt(browser, answer.headers.get('location')!, config, start);
    assert.equal(tokens.claims()!.sub, user.uuid, 'the sign-in finished with the decision, no second consent round');
  });
});
