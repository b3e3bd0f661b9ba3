/**
 * The provider's interaction routes (`/oidc/interaction/:uid`): the glue between the engine and the
 * hosted pages. Login is the hosted login page (the browser comes back here with its Twofold session
 * cookie); consent is a page of ours, skipped when remembered or for first-party clients.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import formbody from '@fastify/formbody';
import { decodeJwt } from 'jose';
import type Provider from 'oidc-provider';
import type { Deps } from '../deps.ts';
import { AppError } from '../errors.ts';
import { ACCESS_COOKIE } from '../http/cookies.ts';
import { assertNotCrossSite, clientInfo } from '../http/plugins/auth.ts';
import { findUserById } from '../db/repositories/users.ts';
import { decideLogin, type LoginRequest } from '../services/oidc/interaction-login.ts';
import { consentCovers, decideConsentInteraction } from '../services/oidc/consent.ts';
import { consentPage, oidcErrorPage } from '../web/pages/oidc.ts';
import { acrValuesRequireAal2, formActionSource, pageCsp } from './page-policy.ts';

type Details = Awaited<ReturnType<Provider['interactionDetails']>>;

/** What we keep in the interaction between visits (the engine's free-form `lastSubmission`). */
interface Memo {
  twofoldFresh?: { afterMs: number; staleSessionId: string | null };
}

/** How long a consent submission that lost the decision waits for the decider's result, and its first pause between looks. */
const DECIDER_WAIT_MS = 3000;
const DECIDER_FIRST_POLL_MS = 50;

/** The sub of an id_token_hint (the engine verified its signature before starting the interaction). */
function hintedSub(details: Details): string | undefined {
  const hint = (details.params as { id_token_hint?: unknown }).id_token_hint;
  if (typeof hint !== 'string') return undefined;
  try {
    const sub = decodeJwt(hint).sub;
    return typeof sub === 'string' ? sub : undefined;
  } catch {
    return undefined;
  }
}

function wantsAal2(details: Details): boolean {
  const params = details.params as { acr_values?: string; claims?: string };
  if (acrValuesRequireAal2(params.acr_values)) return true;
  return (details.prompt.reasons as string[]).includes('aal2_required');
}

/**
 * CSRF check of the consent forms. The hosted pages send no referrer, so a browser posts their forms
 * with `Origin: null`; Fetch Metadata then says where the post came from, and only same-origin passes.
 * Without it (older browsers) the usual Origin rule applies.
 */
function assertSameOriginForm(request: FastifyRequest, deps: Deps): void {
  const site = request.headers['sec-fetch-site'];
  if (site === undefined) return assertNotCrossSite(request, deps.config);
  if (site !== 'same-origin') throw new AppError('csrf_rejected', { detail: 'The form was not posted from this site.' });
}

/** Registers the interaction routes; `engine` gives the provider (loaded on first use, see mount.ts). */
export async function interactionRoutes(app: FastifyInstance, { deps, engine }: { deps: Deps; engine: () => Promise<Provider> }): Promise<void> {
  const { config } = deps;
  // The consent page's plain HTML forms post url-encoded bodies (their fields are not read: the buttons are the choice).
  await app.register(formbody);

  const page = (reply: FastifyReply, status: number, body: string, formOrigins: string[] = []): FastifyReply =>
    reply.code(status).header('Cache-Control', 'no-store').header('Content-Security-Policy', pageCsp(formOrigins)).type('text/html; charset=utf-8').send(body);

  /** The interaction of this browser (the engine checks its cookie), or an error page. */
  async function details(provider: Provider, request: FastifyRequest, reply: FastifyReply): Promise<Details | undefined> {
    try {
      return await provider.interactionDetails(request.raw, reply.raw);
    } catch (e) {
      deps.logger.debug({ err: e }, 'oidc interaction not found');
      page(reply, 400, oidcErrorPage(config.productName, 'invalid_request', 'This sign-in has expired or belongs to another browser. Go back to the application and start again.'));
      return undefined;
    }
  }

  /** Hands the result to the engine, which redirects the browser on to the authorization endpoint. */
  // A consent result is merged with the login result before it (prompt=login would otherwise ask again).
  async function finish(provider: Provider, request: FastifyRequest, reply: FastifyReply, result: Record<string, unknown>, merge = false): Promise<void> {
    let redirectTo: string;
    try {
      redirectTo = await provider.interactionResult(request.raw, reply.raw, result, { mergeWithLastSubmission: merge });
    } catch (e) {
      // The interaction expired or was finished meanwhile (a second tab): say so, never a 500.
      deps.logger.debug({ err: e }, 'oidc interaction result refused');
      await page(reply, 400, oidcErrorPage(config.productName, 'invalid_request', 'This sign-in has expired. Go back to the application and start again.'));
      return;
    }
    await reply.code(303).header('Cache-Control', 'no-store').redirect(redirectTo, 303);
  }

  /**
   * The answer to a submission of a consent interaction another one already decided: on to the
   * engine's resume, as the deciding one was sent, with nothing saved. A browser shows the answer to
   * the last of a double-clicked form's posts, which is rarely the one that decided. The decider saves
   * its result only after its claim commits: a browser sent to the resume before that made the engine
   * drop the interaction (no result yet) and start a new one, so the user met the consent page again
   * and the decider's result found nothing to save to (an orphan grant). So the result (or the end of
   * the interaction) is waited for first, a few seconds at most (a decider that died meanwhile).
   */
  async function decided(provider: Provider, reply: FastifyReply, d: Details): Promise<void> {
    // Looks at growing intervals (50, 100, 200… ms): a handful of reads per losing submission.
    for (let waited = 0, pause = DECIDER_FIRST_POLL_MS; waited < DECIDER_WAIT_MS; waited += pause, pause *= 2) {
      const interaction = await provider.Interaction.find(d.uid);
      if (!interaction || interaction.result) break;
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
    await reply.code(303).header('Cache-Control', 'no-store').redirect(d.returnTo, 303);
  }

  async function redirectOrigins(provider: Provider, clientId: unknown): Promise<string[]> {
    const client = typeof clientId === 'string' ? await provider.Client.find(clientId) : undefined;
    return (client?.redirectUris ?? []).map(formActionSource);
  }

  app.get<{ Params: { uid: string } }>('/oidc/interaction/:uid', { schema: { hide: true } }, async (request, reply) => {
    const provider = await engine();
    const d = await details(provider, request, reply);
    if (!d) return reply;
    if (d.prompt.name === 'login') {
      const memo = (d.lastSubmission ?? {}) as Memo;
      const req: LoginRequest = {
        reasons: d.prompt.reasons as string[],
        maxAgeSeconds: typeof d.params.max_age === 'number' ? d.params.max_age : (typeof d.params.max_age === 'string' ? Number(d.params.max_age) : undefined),
        wantsAal2: wantsAal2(d),
        fresh: memo.twofoldFresh,
        ...(hintedSub(d) ? { requiredUserId: hintedSub(d) } : {}),
      };
      const decision = await decideLogin(deps, request.cookies[ACCESS_COOKIE], req);
      if (decision.kind === 'refuse') {
        return finish(provider, request, reply, { error: decision.error, error_description: decision.description });
      }
      if (decision.kind === 'hosted_login') {
        if (decision.fresh && !memo.twofoldFresh) {
          d.lastSubmission = { ...memo, twofoldFresh: decision.fresh };
          await d.persist();
        }
        const back = `/oidc/interaction/${encodeURIComponent(d.uid)}`;
        // sso=1: the page may renew a Twofold session whose access token merely expired (not for a fresh login).
        const sso = decision.sso ? '&sso=1' : '';
        return reply.header('Cache-Control', 'no-store').redirect(`/login?return_to=${encodeURIComponent(back)}${sso}`, 303);
      }
      // The provider session is linked to this Twofold session when the engine resumes (mount.ts): only then is its uid final.
      return finish(provider, request, reply, {
        login: { accountId: decision.userId, acr: decision.acr, amr: decision.amr, ts: decision.authTimeSeconds, remember: true, twofoldSessionId: decision.sessionId },
      });
    }
    if (d.prompt.name === 'consent') {
      const accountId = d.session?.accountId;
      const clientId = String(d.params.client_id);
      const client = await provider.Client.find(clientId);
      if (!accountId || !client) return finish(provider, request, reply, { error: 'access_denied', error_description: 'unknown client or no session' });
      const scopes = missingScopes(d);
      // Asked for (prompt=consent), or a native application: the engine asks on every request of a
      // client with an app-scheme redirect, because any app on the device may claim that scheme and
      // start a flow with the real client_id (RFC 8252 §8.6). A remembered consent does not answer it.
      // `skip_consent` (a first-party application) answers prompt=consent, but not a native client's
      // prompt: that guards against another app on the device, which the operator's trust in the real
      // one does not cover (with it, any app claiming the scheme got a code and a refresh token silently).
      const reasons = d.prompt.reasons as string[];
      const native = reasons.includes('native_client_prompt');
      const explicit = reasons.includes('consent_prompt') || native;
      const skip = (client as unknown as { skip_consent?: boolean }).skip_consent === true;
      const remembered = !native && (skip || (!explicit && await consentCovers(deps, accountId, clientId, scopes)));
      if (remembered) {
        // Once per interaction: the page loaded many times at once would save a grant per load.
        if (!(await decideConsentInteraction(deps, d.uid))) return decided(provider, reply, d);
        return finish(provider, request, reply, { consent: { grantId: await grantScopes(provider, d, accountId, clientId) } }, true);
      }
      const user = await findUserById(deps.db, accountId);
      // Where this request's answer goes (the engine checked it against the client's URIs): for an
      // app-scheme URI, which has no host, the scheme names the app.
      const target = new URL(String(d.params.redirect_uri ?? client.redirectUris?.[0] ?? config.publicUrl));
      const host = target.host || target.protocol.replace(/:$/, '');
      return page(reply, 200, consentPage({
        productName: config.productName, uid: d.uid, clientName: client.clientName ?? clientId, clientHost: host,
        username: user?.username ?? '', scopes: requestedScopes(d),
      }), await redirectOrigins(provider, clientId));
    }
    return finish(provider, request, reply, { error: 'invalid_request', error_description: `unsupported prompt ${d.prompt.name}` });
  });

  app.post<{ Params: { uid: string } }>('/oidc/interaction/:uid/confirm', { schema: { hide: true } }, async (request, reply) => {
    // A consent form posted from another site is refused (the interaction cookie is SameSite=Lax too).
    assertSameOriginForm(request, deps);
    const provider = await engine();
    const d = await details(provider, request, reply);
    if (!d) return reply;
    const accountId = d.session?.accountId;
    if (d.prompt.name !== 'consent' || !accountId) return page(reply, 400, oidcErrorPage(config.productName, 'invalid_request', 'Nothing to consent to.'));
    const clientId = String(d.params.client_id);
    // The interaction is decided once: concurrent posts of the form each passed the reads above, and
    // would each have saved a grant and an audit entry. The consent and its entry commit with the claim.
    if (!(await decideConsentInteraction(deps, d.uid, { userId: accountId, clientId, scopes: requestedScopes(d), client: clientInfo(request) }))) return decided(provider, reply, d);
    const grantId = await grantScopes(provider, d, accountId, clientId);
    return finish(provider, request, reply, { consent: { grantId } }, true);
  });

  app.post<{ Params: { uid: string } }>('/oidc/interaction/:uid/abort', { schema: { hide: true } }, async (request, reply) => {
    assertSameOriginForm(request, deps);
    const provider = await engine();
    const d = await details(provider, request, reply);
    if (!d) return reply;
    // A refusal is that one decision too: posted beside an "allow" it must not overturn a consent
    // already recorded (the application would get access_denied while the consent stays remembered).
    if (d.prompt.name === 'consent' && !(await decideConsentInteraction(deps, d.uid))) return decided(provider, reply, d);
    return finish(provider, request, reply, { error: 'access_denied', error_description: 'The user denied the request.' });
  });
}

function requestedScopes(d: Details): string[] {
  return String(d.params.scope ?? 'openid').split(' ').filter(Boolean);
}

function missingScopes(d: Details): string[] {
  const details = d.prompt.details as { missingOIDCScope?: string[] };
  return details.missingOIDCScope ?? [];
}

/** Adds what the prompt found missing to the grant (a new one, or the session's existing one) and saves it. */
async function grantScopes(provider: Provider, d: Details, accountId: string, clientId: string): Promise<string> {
  const grant = d.grantId ? await provider.Grant.find(d.grantId) ?? new provider.Grant({ accountId, clientId }) : new provider.Grant({ accountId, clientId });
  const details = d.prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[]; missingResourceScopes?: Record<string, string[]> };
  if (details.missingOIDCScope) grant.addOIDCScope(details.missingOIDCScope.join(' '));
  if (details.missingOIDCClaims) grant.addOIDCClaims(details.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(details.missingResourceScopes ?? {})) grant.addResourceScope(indicator, scopes.join(' '));
  return grant.save();
}
