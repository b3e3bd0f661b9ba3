/** Turns an access token into the caller's identity, refusing tokens of revoked sessions at once. */
import type { Deps } from '../deps.ts';
import { AppError } from '../errors.ts';
import { TokenError } from '../crypto/jwt.ts';
import { findLiveSessionUser } from '../db/repositories/sessions.ts';
import { revocationEpoch } from '../db/revocation-epoch.ts';

/** Who is calling, from a verified access token of a live session. */
export interface AuthContext {
  userId: string;
  sessionId: string;
  username: string;
  aal: 'aal1' | 'aal2';
  amr: string[];
  /** Expiry of the access token (seconds since the epoch). */
  exp: number;
}

/**
 * Verifies `token` as an access token and checks its session in the database on every request:
 * a signed, unexpired token of a revoked session is refused immediately, on every instance.
 */
export async function authenticateAccessToken(deps: Deps, token: string): Promise<AuthContext> {
  const now = deps.clock();
  let claims;
  try {
    claims = await deps.keys.verify('access', token, now);
  } catch (e) {
    if (e instanceof TokenError) throw new AppError('invalid_token', { cause: e });
    throw e;
  }
  const sid = claims.sid;
  if (typeof sid !== 'string' || typeof claims.sub !== 'string') throw new AppError('invalid_token', { detail: 'Token lacks a session.' });
  const live = await liveSession(deps, sid, now);
  if (!live || live.user_id !== claims.sub) throw new AppError('invalid_token', { detail: 'The session has ended.' });
  if (!live.is_active) throw new AppError('account_inactive');
  return {
    userId: claims.sub,
    sessionId: sid,
    username: typeof claims.username === 'string' ? claims.username : '',
    aal: claims.aal === 'aal2' ? 'aal2' : 'aal1',
    amr: Array.isArray(claims.amr) ? (claims.amr as string[]) : [],
    exp: claims.exp ?? 0,
  };
}

type LiveSession = { user_id: string; is_active: boolean };
interface CachedCheck {
  value: LiveSession;
  epoch: number;
  untilMs: number;
}
const checks = new WeakMap<Deps, Map<string, CachedCheck>>();
const CHECK_CACHE_LIMIT = 50_000;

/**
 * The session's state, from a per-instance cache of at most SESSION_CHECK_CACHE_MS (500 ms): the
 * session lookup is the only database round trip of most authenticated requests. Only positive
 * answers are cached; any revocation made by this process (a new epoch) voids every entry at once,
 * and revocations by other instances are seen when the entry expires, within the contract's 1 s.
 * Expiry uses the wall clock (Date.now), not deps.clock: it bounds real staleness between instances.
 */
async function liveSession(deps: Deps, sid: string, now: Date): Promise<LiveSession | undefined> {
  const ttl = deps.config.sessionCheckCacheMs;
  if (ttl <= 0) return findLiveSessionUser(deps.db, sid, now);
  let cache = checks.get(deps);
  if (!cache) checks.set(deps, (cache = new Map()));
  const epoch = revocationEpoch();
  const hit = cache.get(sid);
  if (hit && hit.epoch === epoch && hit.untilMs > Date.now()) return hit.value;
  const value = await findLiveSessionUser(deps.db, sid, now);
  // Stored under the epoch read before the query: a revocation during it leaves the entry void.
  if (value) {
    if (cache.size >= CHECK_CACHE_LIMIT) cache.clear();
    cache.set(sid, { value, epoch, untilMs: Date.now() + ttl });
  } else {
    cache.delete(sid);
  }
  return value;
}

/** Throws step_up_required unless the session passed a second factor. */
export function requireAal2(auth: AuthContext): void {
  if (auth.aal !== 'aal2') {
    throw new AppError('step_up_required', { detail: 'This action needs a session that passed a second factor: log in again with your code.' });
  }
}
