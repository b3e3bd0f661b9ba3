/** The admin's view of users: keyset search, one user with sessions, and creation with roles. */
import type { Deps } from '../../deps.ts';
import { AppError } from '../../errors.ts';
import { findAdminUser, searchUsersPage, type AdminUserRow, type SearchPosition } from '../../db/repositories/admin/users.ts';
import { listLiveSessions } from '../../db/repositories/sessions.ts';
import { accountNames } from '../password-check.ts';
import { isUuid } from '../../crypto/random.ts';
import { decodeCursor, encodeCursor, pageLimit } from '../audit/cursor.ts';
import { DEFAULT_PAGE, MAX_PAGE } from '../audit/list.ts';
import type { AuditContext } from '../audit/record.ts';
import { registerUser, type RegisterInput } from '../register-user.ts';
import type { TotpEnrollment } from '../totp-enrollment.ts';
import { validateRoles } from './roles.ts';

/** A user as admins see it: the private profile, roles, second factors, last login and lock. */
export interface AdminUserView {
  uuid: string;
  username: string;
  email: string;
  full_name: string | null;
  email_verified: boolean;
  is_active: boolean;
  roles: string[];
  mfa: { totp: boolean; email: boolean; passkeys: number; backup_codes_remaining: number };
  last_login_at: string | null;
  /** End of the longest login lock on any of the account's names; null when not locked. */
  locked_until: string | null;
  created_at: string;
  updated_at: string;
}

/** Builds the view; the lock is read from the limiter (its store's clock), by every name of the account. */
export async function adminUserView(deps: Deps, u: AdminUserRow): Promise<AdminUserView> {
  const lockMs = await deps.limiter.accountLockMs(accountNames(deps, u));
  return {
    uuid: u.id,
    username: u.username,
    email: u.email,
    full_name: u.full_name,
    email_verified: u.email_verified,
    is_active: u.is_active,
    roles: u.roles,
    mfa: { totp: u.totp_active, email: u.email_otp_enabled, passkeys: u.passkeys, backup_codes_remaining: u.backup_codes_remaining },
    last_login_at: u.last_login_at ? u.last_login_at.toISOString() : null,
    locked_until: lockMs > 0 ? new Date(Date.now() + lockMs).toISOString() : null,
    created_at: u.created_at.toISOString(),
    updated_at: u.updated_at.toISOString(),
  };
}

const isPosition = (v: unknown): v is { p: 'u' | 'e'; k: string; i: string } => {
  const o = v as { p?: unknown; k?: unknown; i?: unknown } | null;
  return typeof o === 'object' && o !== null && (o.p === 'u' || o.p === 'e') && typeof o.k === 'string' && o.k.length <= 300 && isUuid(o.i);
};

/** Query of GET /api/v1/admin/users. */
export interface UserSearchQuery {
  query?: string;
  limit?: string;
  cursor?: string;
}

/**
 * Users whose username or e-mail starts with `query` (case-insensitive), in pages. Order: matches by
 * username (by lower-cased username, then id), then matches by e-mail only (by e-mail, then id).
 * The cursor is the last (phase, key, id) seen: a page is one or two index range scans whatever the
 * table's size, and users created or deleted meanwhile never make a page repeat or skip another.
 */
export async function searchUsers(deps: Deps, q: UserSearchQuery): Promise<{ users: AdminUserView[]; next_cursor: string | null }> {
  const limit = pageLimit(q.limit, DEFAULT_PAGE, MAX_PAGE);
  const prefix = (q.query ?? '').trim();
  const cursor = q.cursor ? decodeCursor(q.cursor, isPosition) : undefined;
  let pos: SearchPosition = cursor ? { phase: cursor.p === 'u' ? 'username' : 'email', key: cursor.k, id: cursor.i } : { phase: 'username' };
  const rows: Array<AdminUserRow & { search_key: string; phase: 'u' | 'e' }> = [];
  // One more than a page tells whether another page exists.
  while (rows.length <= limit) {
    const page = await searchUsersPage(deps.db, prefix, pos, limit + 1 - rows.length);
    rows.push(...page.map((r) => ({ ...r, phase: pos.phase === 'username' ? ('u' as const) : ('e' as const) })));
    // Without a query every user matches by username: there is no e-mail phase.
    if (rows.length > limit || pos.phase === 'email' || prefix === '') break;
    pos = { phase: 'email' };
  }
  const pageRows = rows.slice(0, limit);
  const last = pageRows.at(-1);
  return {
    users: await Promise.all(pageRows.map((r) => adminUserView(deps, r))),
    next_cursor: rows.length > limit && last ? encodeCursor({ p: last.phase, k: last.search_key, i: last.id }) : null,
  };
}

/** A session as admins see it. */
export interface AdminSessionView {
  id: string;
  created_at: string;
  last_used_at: string;
  expires_at: string;
  user_agent: string | null;
  ip: string | null;
  aal: string;
  amr: string[];
}

/** One user with their live sessions (the newest MAX_SESSIONS_PER_USER); 404 user_not_found. */
export async function getUserForAdmin(deps: Deps, userId: string): Promise<AdminUserView & { sessions: AdminSessionView[] }> {
  const user = isUuid(userId) ? await findAdminUser(deps.db, userId.toLowerCase()) : undefined;
  if (!user) throw new AppError('user_not_found', { detail: 'No such user.' });
  const sessions = await listLiveSessions(deps.db, user.id, deps.clock(), deps.config.maxSessionsPerUser);
  return {
    ...(await adminUserView(deps, user)),
    sessions: sessions.map((s) => ({
      id: s.id,
      created_at: s.created_at.toISOString(),
      last_used_at: s.last_used_at.toISOString(),
      expires_at: s.expires_at.toISOString(),
      user_agent: s.user_agent,
      ip: s.ip,
      aal: s.aal,
      amr: s.amr,
    })),
  };
}

/** Body of POST /api/v1/admin/users: the sign-up body plus roles and the verified flag. */
export interface AdminCreateInput extends RegisterInput {
  roles?: string[];
  email_verified?: boolean;
}

/**
 * Creates a user as sign-up does (same validation, password policy, uniqueness), with roles and,
 * when the admin vouches for the address, verified without a verification mail. user.created names
 * the admin as actor.
 */
export async function createUserAsAdmin(deps: Deps, input: AdminCreateInput, ctx: AuditContext): Promise<{ user: AdminUserView; totp?: TotpEnrollment }> {
  const roles = validateRoles(input.roles ?? []);
  const { roles: _r, email_verified: verified, ...signup } = input;
  const { user, totp } = await registerUser(deps, signup, ctx, { roles, emailVerified: verified === true });
  const row = await findAdminUser(deps.db, user.id);
  if (!row) throw new AppError('user_not_found');
  const view = await adminUserView(deps, row);
  return totp ? { user: view, totp } : { user: view };
}
