/**
 * The login step of an OpenID authorization: decides from the Twofold session in the browser (the
 * access-token cookie of the hosted login) whether the provider may log the user in, or the hosted
 * login page must run first (no session, prompt=login / max_age needing a fresh login, aal2 wanted).
 * Everything the hosted login enforces (lockout, second-factor limits, TOTP replay) thus applies.
 */
import type { Deps } from '../../deps.ts';
import { AppError } from '../../errors.ts';
import { findSession, revokeSession } from '../../db/repositories/sessions.ts';
import { recordSessionsRevoked } from '../audit/login-events.ts';
import { userContext } from '../audit/record.ts';
import type { ClientInfo } from '../tokens.ts';
import { linksOfLiveSession, upsertLink } from '../../db/repositories/oidc/links.ts';
import { authenticateAccessToken } from '../authenticate.ts';
import { hasActiveFactor, loadFactorState } from '../second-factors.ts';

/** What the interaction asked for, as the engine reports it. */
export interface LoginRequest {
  /** Reasons of the engine's login prompt (no_session, login_prompt, max_age, aal2_required, …). */
  reasons: readonly string[];
  maxAgeSeconds: number | undefined;
  wantsAal2: boolean;
  /** The user the application named (`id_token_hint`'s sub, verified by the engine), if any. */
  requiredUserId?: string;
  /** A fresh login was already asked for in this interaction: not before `afterMs`, and not session `staleSessionId`. */
  fresh: { afterMs: number; staleSessionId: string | null } | undefined;
}

/** The decision: log in with this session, send the browser to the hosted login, or refuse. */
export type LoginDecision =
  | { kind: 'login'; userId: string; sessionId: string; acr: 'aal1' | 'aal2'; amr: string[]; authTimeSeconds: number }
  // sso: the hosted login page may renew the browser's session (refresh cookie) instead of asking for the password.
  | { kind: 'hosted_login'; fresh: { afterMs: number; staleSessionId: string | null } | undefined; sso: boolean }
  | { kind: 'refuse'; error: string; description: string };

/** Decides the login step for the browser presenting `accessToken` (the cookie, if any). */
export async function decideLogin(deps: Deps, accessToken: string | undefined, req: LoginRequest): Promise<LoginDecision> {
  const now = deps.clock();
  let auth;
  if (accessToken) {
    try {
      auth = await authenticateAccessToken(deps, accessToken);
    } catch (e) {
      if (!(e instanceof AppError)) throw e;
    }
  }
  // Read again for its creation time, and held to the same rules: a logout committed since the
  // token's check must not log the browser in to an application.
  const found = auth ? await findSession(deps.db, auth.sessionId) : undefined;
  const session = found && !found.revoked_at && found.expires_at > now ? found : undefined;
  if (!auth || !session) {
    // No session in the browser. A login that follows counts as fresh for prompt=login, max_age and
    // the rest: remembered now, so the browser is not sent to log in a second time when it comes back.
    // The page may still renew a session whose access token merely expired (sso), except for
    // prompt=login or a second round; a renewed session is judged by its own creation time.
    const demanding = req.reasons.includes('login_prompt') || req.maxAgeSeconds !== undefined || req.wantsAal2 || req.requiredUserId !== undefined;
    const fresh = req.fresh ?? (demanding ? { afterMs: now.getTime(), staleSessionId: null } : undefined);
    return { kind: 'hosted_login', fresh, sso: req.fresh === undefined && !req.reasons.includes('login_prompt') };
  }

  const wrongUser = req.requiredUserId !== undefined && req.requiredUserId !== auth.userId;
  const freshNeeded = wrongUser || req.reasons.includes('login_prompt')
    || (req.maxAgeSeconds !== undefined && now.getTime() - session.created_at.getTime() > req.maxAgeSeconds * 1000)
    || (req.wantsAal2 && auth.aal !== 'aal2');
  if (freshNeeded) {
    const fresh = req.fresh;
    const isFresh = fresh !== undefined && session.id !== fresh.staleSessionId && session.created_at.getTime() >= fresh.afterMs;
    if (!isFresh) {
      if (req.wantsAal2 && auth.aal !== 'aal2' && !hasActiveFactor(await loadFactorState(deps, auth.userId))) {
        // Logging in again cannot give a second factor the user does not have.
        return { kind: 'refuse', error: 'unmet_authentication_requirements', description: 'This application requires two-factor authentication: turn it on in your account first.' };
      }
      return { kind: 'hosted_login', fresh: fresh ?? { afterMs: now.getTime(), staleSessionId: session.id }, sso: false };
    }
    if (req.wantsAal2 && auth.aal !== 'aal2') {
      return { kind: 'refuse', error: 'unmet_authentication_requirements', description: 'A second factor was required and not used.' };
    }
    // The engine would ask again and again for the hinted user: after one fresh login, refuse instead.
    if (wrongUser) return { kind: 'refuse', error: 'login_required', description: 'You are signed in as another user than the application expected.' };
  }
  return {
    kind: 'login',
    userId: auth.userId,
    sessionId: auth.sessionId,
    acr: auth.aal,
    amr: auth.amr,
    authTimeSeconds: Math.floor(session.created_at.getTime() / 1000),
  };
}

/**
 * A login on the hosted pages (or the API, with cookies) in a browser that held `previousSessionId`
 * of the same user: the provider sessions linked to it move to the new session, ending the previous
 * one (linkProviderSession). Left linked to a session no cookie holds any more, they outlived the
 * browser's logout (no back-channel logout, the applications' tokens still working), and an
 * application's logout ended that old session and left the browser signed in. Another user's session
 * is left alone: the provider runs the login step for the browser's new user (provider.ts).
 */
export async function moveProviderSessionsToLogin(deps: Deps, previousSessionId: string, sessionId: string, userId: string, client: ClientInfo): Promise<void> {
  for (const uid of await linksOfLiveSession(deps.db, previousSessionId, userId, deps.clock())) await linkProviderSession(deps, uid, sessionId, userId, client);
}

/**
 * Records that provider session `providerSessionUid` belongs to Twofold session `sessionId`. A fresh
 * login of the same user in the same browser (prompt=login, max_age, a second factor asked for)
 * moves the provider session, with every token it issued, to the new Twofold session: the one it
 * replaces is revoked (reason `superseded`, announced as session.revoked). It was this browser's,
 * and no cookie holds it any more; left live, revoking it later from the sessions list would have
 * ended nothing (the tokens follow the link), and it would have kept the user's sessions cluttered.
 */
export async function linkProviderSession(deps: Deps, providerSessionUid: string, sessionId: string, userId: string, client: ClientInfo): Promise<void> {
  await deps.db.transaction(async (tx) => {
    const now = deps.clock();
    // Only to a live session of that user. A consent page opened before a second login replays, when
    // submitted, the login step's old session (the engine merges the earlier result): linked to it,
    // the provider session went to a revoked session (the code exchange failed, the applications were
    // logged out) and the browser's live session was revoked as "superseded".
    const target = await findSession(tx, sessionId);
    if (!target || target.user_id !== userId || target.revoked_at !== null || target.expires_at <= now) return;
    const previous = await upsertLink(tx, providerSessionUid, sessionId, userId, now);
    if (!previous || previous.session_id === sessionId || previous.user_id !== userId) return;
    if (await revokeSession(tx, previous.session_id, 'superseded', now)) {
      await recordSessionsRevoked(deps, tx, userContext(userId, client), userId, [previous.session_id], 'superseded');
    }
  });
}
