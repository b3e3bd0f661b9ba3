/** Admin helpers for tests: an API key, and a person with the admin role logged in at aal2. */
import type { LightMyRequestResponse } from 'fastify';
import { grantRole } from '../../src/services/admin/roles.ts';
import { SYSTEM_CONTEXT } from '../../src/services/audit/record.ts';
import type { AuditRow } from '../../src/db/repositories/audit/audit-log.ts';
import { bearer, createUser, enableTotp, type TestApp, type TestUser } from './app.ts';

/** A valid ADMIN_API_KEY (≥ 32 characters). */
export const ADMIN_KEY = 'test-admin-key-0123456789abcdefghijklmnop';

/** Env that switches the API key on. */
export const ADMIN_ENV = { ADMIN_API_KEY: ADMIN_KEY };

/** A user with the admin role and an aal2 access token (TOTP activated by the login that issued it). */
export async function createAdmin(t: TestApp): Promise<TestUser & { token: string; secret: string }> {
  const user = await createUser(t.app);
  await grantRole(t.deps, user.username, 'admin', SYSTEM_CONTEXT);
  const { tokens, secret } = await enableTotp(t, user);
  return { ...user, token: tokens.access_token, secret };
}

/** An admin API call with the API key (or `auth` as Bearer). */
export function adminCall(t: TestApp, method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: unknown, auth: string = ADMIN_KEY): Promise<LightMyRequestResponse> {
  return t.app.inject({ method, url, headers: bearer(auth), ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }) });
}

/** Every audit row of a user, oldest first. */
export async function auditRowsOf(t: TestApp, userId: string): Promise<AuditRow[]> {
  // ORDER BY the column, not the text alias `id` (PostgreSQL picks the output column): as text, '1000'
  // sorts before '999', which reordered a test's entries whenever its ids crossed a power of ten.
  return (await t.deps.db.query<AuditRow>('SELECT id::text AS id, type, at, user_id, actor_kind, actor_id, ip, user_agent, data FROM audit_log WHERE user_id = $1 ORDER BY audit_log.id', [userId])).rows;
}

/** The types of a user's audit rows, oldest first. */
export async function auditTypesOf(t: TestApp, userId: string): Promise<string[]> {
  return (await auditRowsOf(t, userId)).map((r) => r.type);
}
