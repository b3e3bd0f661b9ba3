/**
 * The OpenID Provider: panva's oidc-provider (OpenID Certified) configured for Twofold. Issuer is
 * PUBLIC_URL, storage is our database (adapter.ts), ID tokens are RS256 with our signing key (the same
 * JWKS as the JSON API), accounts are our users, and login / second factor / consent happen on the
 * hosted pages (interactions.ts).
 */
import Provider, { interactionPolicy, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import type { Deps } from '../deps.ts';
import { findUserById } from '../db/repositories/users.ts';
import { findLinkState } from '../db/repositories/oidc/links.ts';
import { findSession } from '../db/repositories/sessions.ts';
import { DATABASE_RETRY_AFTER_SECONDS, isDatabaseUnavailable } from '../db/unavailable.ts';
import { ACCESS_COOKIE, BROWSER_SESSION_COOKIE, browserSessionId } from '../http/cookies.ts';
import { AppError } from '../errors.ts';
import { authenticateAccessToken } from '../services/authenticate.ts';
import { linkProviderSession } from '../services/oidc/interaction-login.ts';
import { loggedOutPage, logoutPage, oidcErrorPage, type LogoutAccounts } from '../web/pages/oidc.ts';
import { koaClientInfo } from './client-info.ts';
import { createAdapterClass } from './adapter.ts';
import { AUTH_METHODS, OIDC_SCOPES, redirectsOnlyToLoopback, toProviderMetadata, type ClientInput } from './client-metadata.ts';
import { RingSigningKey, ringIdTokenValidator } from './signing-key.ts';
import { acrValuesRequireAal2, formActionSource, pageCsp, sendPage } from './page-policy.ts';

/** Where the engine's endpoints live (the discovery document lists them). */
export const OIDC_ROUTES = {
  authorization: '/oidc/auth',
  token: '/oidc/token',
  userinfo: '/oidc/me',
  jwks: '/.well-known/jwks.json',
  revocation: '/oidc/token/revocation',
  introspection: '/oidc/token/introspection',
  end_session: '/oidc/session/end',
  backchannel_authentication: '/oidc/backchannel',
  code_verification: '/oidc/device',
  device_authorization: '/oidc/device/auth',
  pushed_authorization_request: '/oidc/request',
  registration: '/oidc/reg',
  challenge: '/oidc/challenge',
} as const;

/**
 * How long the engine keeps a provider session that no account has logged in to (seconds). The engine
 * saves one for any browser that opens the logout page (the logout form's secret lives in it), cookie
 * or not: with the full session lifetime, every bare request would leave a row for a month. Ten
 * minutes is enough to submit that form or to finish a login; a login gives the session an account,
 * and the engine recomputes the lifetime on every save (ttl.Session below), so it then gets the full one.
 */
export const ANONYMOUS_SESSION_TTL_SECONDS = 600;

/** acr values: aal2 = a second factor was passed in this login. */
export const ACR_VALUES = ['aal1', 'aal2'] as const;

/**
 * True when the request asks for a second factor: `acr_values=aal2`. (An essential `acr` claim could
 * ask too, but the engine's claims parameter is off: claims_parameter_supported is false.)
 */
export function wantsAal2(ctx: KoaContextWithOIDC): boolean {
  const params = ctx.oidc.params as { acr_values?: string } | undefined;
  return acrValuesRequireAal2(params?.acr_values);
}

/**
 * Compares the Twofold session this browser holds (its browser-session cookie, http/cookies.ts; for a
 * browser logged in before that cookie existed, its access cookie) with the one that logged provider
 * session `uid` in. Logging in to, or out of, the hosted pages leaves the provider session linked to
 * the earlier Twofold session, which may still be live:
 * - no live session in the browser (logged out; or no cookie at all): 'gone' — the login step must
 *   run, so a logout on the hosted pages also ends single sign-on in this browser;
 * - another user's session: 'other_user' — the login step must run with it, so that the application
 *   is not handed the earlier user;
 * - the same user's session: single sign-on goes on (prompt=none included), and the provider session
 *   moves to it, ending the one it replaces (linkProviderSession), as a fresh login through the
 *   provider does;
 * - but a session weaker than what the provider session recorded (aal1 where its login was aal2: the
 *   user logged in again with the password alone, after removing their second factor, say):
 *   'weaker' — the login step runs, so ID tokens never claim the second factor the browser's session
 *   did not pass.
 */
async function followBrowserSession(deps: Deps, ctx: KoaContextWithOIDC, uid: string, recordedAcr: string | undefined): Promise<'same' | 'other_user' | 'gone' | 'weaker'> {
  const now = deps.clock();
  const link = await findLinkState(deps.db, uid, now);
  // A provider session without a link has ended (or is being swept): the adapter gives it no login.
  if (!link) return 'same';
  const current = await browserSession(deps, ctx, now);
  if (!current) return 'gone';
  if (current.userId !== link.user_id) return 'other_user';
  if (recordedAcr === 'aal2' && current.aal !== 'aal2') return 'weaker';
  if (current.sessionId !== link.session_id) await linkProviderSession(deps, uid, current.sessionId, current.userId, koaClientInfo(ctx));
  return 'same';
}

/** The browser's live Twofold session, or undefined (see {@link followBrowserSession}). */
async function browserSession(deps: Deps, ctx: KoaContextWithOIDC, now: Date): Promise<{ sessionId: string; userId: string; aal: string } | undefined> {
  const marked = browserSessionId(deps.tokenHasher, ctx.cookies.get(BROWSER_SESSION_COOKIE));
  if (marked) {
    const session = await findSession(deps.db, marked);
    return session && !session.revoked_at && session.expires_at > now ? { sessionId: session.id, userId: session.user_id, aal: session.aal } : undefined;
  }
  const cookie = ctx.cookies.get(ACCESS_COOKIE);
  if (!cookie) return undefined;
  try {
    return await authenticateAccessToken(deps, cookie);
  } catch (e) {
    if (e instanceof AppError) return undefined;
    throw e;
  }
}

/** Who the logout confirmation logs out, and who stays signed in in this browser (see logoutPage). */
async function logoutAccounts(deps: Deps, ctx: KoaContextWithOIDC): Promise<LogoutAccounts> {
  const accountId = ctx.oidc.session?.accountId;
  const ending = accountId ? await findUserById(deps.db, accountId) : undefined;
  const current = await browserSession(deps, ctx, deps.clock());
  const staying = current && current.userId !== accountId ? await findUserById(deps.db, current.userId) : undefined;
  return { ending: ending?.username, stayingSignedIn: staying?.username };
}

function policy(deps: Deps) {
  const { base, Check } = interactionPolicy;
  const p = base();
  // The engine does not enforce voluntary acr_values: a request for aal2 sends an aal1 session back to log in with a second factor.
  p.get('login')!.checks.add(new Check('aal2_required', 'A second factor is required', (ctx) =>
    wantsAal2(ctx) && ctx.oidc.session?.acr !== 'aal2' && !ctx.oidc.result?.login ? Check.REQUEST_PROMPT : Check.NO_NEED_TO_PROMPT));
  // The login step then decides from the browser's session (interaction-login.ts).
  p.get('login')!.checks.add(new Check('twofold_session_changed', 'The browser is no longer signed in as this user', 'login_required', async (ctx) => {
    const session = ctx.oidc.session;
    if (!session?.accountId || ctx.oidc.result?.login) return Check.NO_NEED_TO_PROMPT;
    return (await followBrowserSession(deps, ctx, session.uid, session.acr)) === 'same' ? Check.NO_NEED_TO_PROMPT : Check.REQUEST_PROMPT;
  }));
  return p;
}

/**
 * Builds the provider for `deps` with the clients of OIDC_CLIENTS_FILE; `signingKey` must be refreshed
 * before the engine handles a request (mount.ts does).
 */
export async function createProvider(deps: Deps, fileClients: readonly ClientInput[]): Promise<{ provider: Provider; signingKey: RingSigningKey }> {
  const { config } = deps;
  const signingKey = await RingSigningKey.create(deps.keys.ring, deps.clock);
  const configuration: Configuration = {
    adapter: createAdapterClass(deps),
    clients: fileClients.map(toProviderMetadata),
    extraClientMetadata: {
      properties: ['skip_consent'],
      validator(_ctx, key, value, metadata) {
        if (key === 'skip_consent') metadata.skip_consent = value === true;
      },
    },
    clientDefaults: { grant_types: ['authorization_code'], id_token_signed_response_alg: 'RS256', response_types: ['code'], token_endpoint_auth_method: 'client_secret_basic' },
    async findAccount(_ctx, id) {
      const user = await findUserById(deps.db, id);
      // A deactivated user is no account: no token, no userinfo.
      if (!user || !user.is_active) return undefined;
      return {
        accountId: user.id,
        async claims() {
          return {
            sub: user.id,
            preferred_username: user.username,
            ...(user.full_name ? { name: user.full_name } : {}),
            updated_at: Math.floor(user.updated_at.getTime() / 1000),
            email: user.email,
            email_verified: user.email_verified,
          };
        },
      };
    },
    // The JSON API's key ring: the same kid and key as its tokens, rotation included.
    jwks: { keys: [signingKey as never] },
    cookies: {
      // A derived key: no extra secret to configure, and it changes with TOKEN_HASH_KEY.
      keys: [deps.tokenHasher.hash('oidc-cookie-key', 'v1')],
      long: { signed: true, httpOnly: true, sameSite: 'lax', secure: config.secureCookies },
      short: { signed: true, httpOnly: true, sameSite: 'lax', secure: config.secureCookies },
    },
    claims: {
      // The engine leaves acr/amr/auth_time out unless asked; the contract wants them in every ID token.
      openid: ['sub', 'acr', 'amr', 'auth_time'],
      profile: ['preferred_username', 'name', 'updated_at'],
      email: ['email', 'email_verified'],
      acr: null,
      amr: null,
      auth_time: null,
      sid: null,
    },
    scopes: [...OIDC_SCOPES],
    acrValues: [...ACR_VALUES],
    responseTypes: ['code'],
    // What a client can be registered with (client-metadata.ts), and so what discovery advertises for
    // the token, introspection and revocation endpoints: the engine's default list named
    // client_secret_jwt and private_key_jwt, which no client here can use.
    clientAuthMethods: [...AUTH_METHODS],
    enabledJWA: { idTokenSigningAlgValues: ['RS256'] },
    features: {
      devInteractions: { enabled: false },
      // Pushed authorization requests (on by the engine's default) stored a row of up to 56 KB for 60 s
      // for anyone who knew a public client's id, uncounted; the contract does not offer them.
      pushedAuthorizationRequests: { enabled: false },
      externalSigningSupport: { enabled: true, ack: 'experimental-01' },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        // A client learns only about its own tokens: the engine's default lets any confidential client
        // introspect every client's tokens, refresh tokens included (their user, scopes and sid). No
        // client is a resource server here (access tokens are for userinfo); APIs check Twofold's own
        // tokens at /api/v1/auth-jwt/introspect.
        allowedPolicy: (_ctx, client, token) => token.clientId === client.clientId,
      },
      revocation: { enabled: true },
      userinfo: { enabled: true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          const origins = (ctx.oidc.client?.postLogoutRedirectUris ?? []).map(formActionSource);
          // The confirmation's 303 goes to the application: the form may lead there (CSP form-action covers redirects).
          ctx.set('Content-Security-Policy', pageCsp(origins));
          sendPage(ctx, logoutPage(config.productName, form, ctx.oidc.client?.clientName ?? ctx.oidc.client?.clientId, await logoutAccounts(deps, ctx)));
        },
        async postLogoutSuccessSource(ctx) {
          sendPage(ctx, loggedOutPage(config.productName));
        },
      },
    },
    pkce: {
      // S256 only (the engine offers nothing else); required for public clients, and for native ones
      // with a secret too: a secret shipped inside an app is anyone's (RFC 8252 §8.5), and without PKCE
      // another app claiming the scheme could redeem the code it caught with it. Optional for
      // confidential web clients, unless all their redirect URIs are on loopback (a desktop application,
      // whose secret ships with it, and where any local program can listen on the port first).
      required: (_ctx, client) => client.clientAuthMethod === 'none' || client.applicationType === 'native' || redirectsOnlyToLoopback(client.redirectUris),
    },
    clientBasedCORS(ctx, origin, client) {
      if (origin === 'null') return false;
      if (ctx.oidc.route === 'userinfo' || client.clientAuthMethod === 'none') return (client.redirectUris ?? []).some((u) => URL.parse(u)?.origin === origin);
      return false;
    },
    routes: OIDC_ROUTES,
    interactions: {
      url: (_ctx, interaction) => `/oidc/interaction/${interaction.uid}`,
      policy: policy(deps),
    },
    rotateRefreshToken: true,
    ttl: {
      AccessToken: config.oidc.accessTokenTtlSeconds,
      AuthorizationCode: 60,
      ClientCredentials: config.oidc.accessTokenTtlSeconds,
      IdToken: config.oidc.idTokenTtlSeconds,
      RefreshToken: config.oidc.refreshTokenTtlSeconds,
      Interaction: 3600,
      // Never longer than a logged-in session's (OIDC_REFRESH_TOKEN_TTL may be set below ten minutes).
      Session: (_ctx, session) => (session.accountId ? config.oidc.refreshTokenTtlSeconds : Math.min(ANONYMOUS_SESSION_TTL_SECONDS, config.oidc.refreshTokenTtlSeconds)),
      Grant: config.oidc.refreshTokenTtlSeconds,
    },
    // Back-channel logout URIs are registered by the operator (file or admin API), not by users, so
    // they are called even on loopback or private addresses (the engine's SSRF guard would refuse them).
    fetch(url, options) {
      const { dispatcher: _ignored, ...rest } = options as RequestInit & { dispatcher?: unknown };
      return fetch(url, rest);
    },
    async renderError(ctx, out, error) {
      ctx.set('Content-Security-Policy', pageCsp([]));
      if (isDatabaseUnavailable(error)) {
        // The database is down or restarting: an outage to wait out (503), not a failed sign-in (500).
        ctx.status = 503;
        ctx.set('Retry-After', DATABASE_RETRY_AFTER_SECONDS);
        sendPage(ctx, oidcErrorPage(config.productName, 'temporarily_unavailable', 'The service cannot be reached right now. Try again in a few seconds.'));
        return;
      }
      sendPage(ctx, oidcErrorPage(config.productName, String(out.error), out.error_description ? String(out.error_description) : undefined));
    },
  };
  const provider = new Provider(config.publicUrl, configuration);
  // mount.ts sets X-Forwarded-Proto/Host/For from PUBLIC_URL and Fastify's client address on every
  // request it hands over, so the engine may read them (clients' own values are overwritten).
  provider.proxy = true;
  // sid in every ID token (the contract lists it), not only for clients with back-channel logout.
  provider.Client.prototype.includeSid = () => true;
  // id_token_hint (authorization, end-session) signed by any key the ring still publishes, not only the current one.
  provider.IdToken.validate = ringIdTokenValidator(deps.keys.ring, deps.clock, provider.issuer) as typeof provider.IdToken.validate;
  return { provider, signingKey };
}
