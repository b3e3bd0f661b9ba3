/** Creates sessions and signs the token pair of a session. Tokens are never stored, only the refresh jti. */
import type { Deps } from '../deps.ts';
import { AppError } from '../errors.ts';
import type { Queryable } from '../db/database.ts';
import { insertSession } from '../db/repositories/sessions.ts';
import type { UserRow } from '../db/repositories/users.ts';
import { newId } from '../crypto/random.ts';

/** The login/refresh response body. */
export interface TokenPair {
  access_token: string;
  refresh_token: string;
  token_type: 'Bearer';
  expires_in: number;
}

/** Authentication strength reached at login. */
export interface AuthLevel {
  amr: string[];
  aal: 'aal1' | 'aal2';
}

export const AMR = {
  password: ['pwd'],
  totp: ['pwd', 'otp', 'mfa'],
  email: ['pwd', 'otp', 'mfa'],
  backupCode: ['pwd', 'mfa'],
} as const;

/** Client facts recorded on a session. */
export interface ClientInfo {
  userAgent: string | null;
  ip: string | null;
}

/**
 * Inserts a new session in `tx` and returns what is needed to sign its tokens. `user` is the row the
 * login checked the password against: when the password changed since (a reset or change while this
 * login was in flight) no session is created and the login fails with invalid_credentials.
 */
export async function createSession(deps: Deps, tx: Queryable, user: Pick<UserRow, 'id' | 'password_changed_at'>, level: AuthLevel, client: ClientInfo) {
  const now = deps.clock();
  const session = {
    id: newId(),
    user_id: user.id,
    current_jti: newId(),
    amr: [...level.amr],
    aal: level.aal,
    user_agent: client.userAgent?.slice(0, 512) ?? null,
    ip: client.ip,
    created_at: now,
    expires_at: new Date(now.getTime() + deps.config.refreshTokenTtlSeconds * 1000),
  };
  if (!(await insertSession(tx, session, user.password_changed_at))) throw passwordChangedDuringLogin();
  return session;
}

/** The refusal of a login whose password changed (a reset or change) while it was in flight. */
export function passwordChangedDuringLogin(): AppError {
  return new AppError('invalid_credentials', { detail: 'The password changed while logging in; log in with the new password.' });
}

/** Signs the access and refresh tokens of a session (in parallel, on the thread pool). */
export async function signTokenPair(
  deps: Deps,
  user: Pick<UserRow, 'id' | 'username' | 'roles'>,
  session: { id: string; amr: readonly string[]; aal: string },
  refreshJti: string,
): Promise<TokenPair> {
  const iat = Math.floor(deps.clock().getTime() / 1000);
  const { accessTokenTtlSeconds, refreshTokenTtlSeconds } = deps.config;
  const [access, refresh] = await Promise.all([
    deps.keys.sign('access', {
      sub: user.id,
      aud: deps.config.jwtAudience,
      iat,
      exp: iat + accessTokenTtlSeconds,
      jti: newId(),
      sid: session.id,
      username: user.username,
      amr: session.amr,
      aal: session.aal,
      roles: user.roles,
    }),
    deps.keys.sign('refresh', { sub: user.id, iat, exp: iat + refreshTokenTtlSeconds, jti: refreshJti, sid: session.id }),
  ]);
  return { access_token: access, refresh_token: refresh, token_type: 'Bearer', expires_in: accessTokenTtlSeconds };
}
