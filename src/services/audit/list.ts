/** Reading the audit log: the admin listing (filters, cursor) and a person's own recent entries. */
import type { Deps } from '../../deps.ts';
import { validationError } from '../../errors.ts';
import { listAuditRows, type AuditRow } from '../../db/repositories/audit/audit-log.ts';
import { findUserByUsername } from '../../db/repositories/users.ts';
import { AUDIT_TYPE_PATTERN } from './record.ts';
import { isUuid } from '../../crypto/random.ts';
import { decodeCursor, encodeCursor, isBigintId, pageLimit, parseIsoTime } from './cursor.ts';

/** An entry as the admin API shows it. */
export interface AuditEventView {
  id: string;
  type: string;
  at: string;
  user_id: string | null;
  actor: { kind: AuditRow['actor_kind']; id?: string };
  ip: string | null;
  user_agent: string | null;
  data: Record<string, unknown>;
}

export function auditEventView(r: AuditRow): AuditEventView {
  return {
    id: r.id,
    type: r.type,
    at: r.at.toISOString(),
    user_id: r.user_id,
    actor: r.actor_id === null ? { kind: r.actor_kind } : { kind: r.actor_kind, id: r.actor_id },
    ip: r.ip,
    user_agent: r.user_agent,
    data: r.data,
  };
}

/** Query of GET /api/v1/admin/audit. */
export interface AuditQuery {
  /** A user's uuid or username. */
  user?: string;
  /** One type or several, comma-separated. */
  type?: string;
  /** ISO 8601 time: entries at or after it. */
  since?: string;
  limit?: string;
  cursor?: string;
}

const isIdCursor = (v: unknown): v is { b: string } => typeof v === 'object' && v !== null && isBigintId((v as { b?: unknown }).b);

/** Default and largest page size of listings. */
export const DEFAULT_PAGE = 50;
export const MAX_PAGE = 100;
/** The page size of a person's own security events (the account page shows one page). */
export const OWN_EVENTS_PAGE = 20;

/**
 * The admin listing, newest first. Pages are cut by id (the insertion order): the cursor is the
 * last id seen, so entries written while paging never shift or repeat older ones.
 */
export async function listAuditEvents(deps: Deps, q: AuditQuery): Promise<{ events: AuditEventView[]; next_cursor: string | null }> {
  const limit = pageLimit(q.limit, DEFAULT_PAGE, MAX_PAGE);
  let userId: string | undefined;
  if (q.user !== undefined && q.user !== '') {
    if (isUuid(q.user)) userId = q.user.toLowerCase();
    else {
      const user = await findUserByUsername(deps.db, q.user);
      // An unknown username matches nothing (a deleted user's entries are found by uuid).
      if (!user) return { events: [], next_cursor: null };
      userId = user.id;
    }
  }
  const types = q.type ? q.type.split(',').map((t) => t.trim()).filter(Boolean) : undefined;
  if (types?.some((t) => !AUDIT_TYPE_PATTERN.test(t))) throw validationError('type', 'Types look like login.failed; separate several with commas.');
  let since: Date | undefined;
  if (q.since) {
    since = parseIsoTime(q.since);
    if (!since) throw validationError('since', 'Give an ISO 8601 time, e.g. 2026-01-31T00:00:00Z.');
  }
  const beforeId = q.cursor ? decodeCursor(q.cursor, isIdCursor).b : undefined;
  const rows = await listAuditRows(deps.db, { userId, types, since, beforeId, limit: limit + 1 });
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return { events: page.map(auditEventView), next_cursor: rows.length > limit && last ? encodeCursor({ b: last.id }) : null };
}

/** An entry as its own user sees it: who acted by kind only, the client only when it was theirs. */
export interface SecurityEventView {
  id: string;
  type: string;
  at: string;
  actor: AuditRow['actor_kind'];
  ip: string | null;
  user_agent: string | null;
  data: Record<string, unknown>;
}

/**
 * The caller's own entries, newest first (GET /api/v1/user/security-events, the account page).
 * An admin's identity and address are not the user's to see; that an admin acted is.
 */
export async function listOwnSecurityEvents(deps: Deps, userId: string, q: { limit?: string; cursor?: string }): Promise<{ events: SecurityEventView[]; next_cursor: string | null }> {
  const limit = pageLimit(q.limit, OWN_EVENTS_PAGE, MAX_PAGE);
  const beforeId = q.cursor ? decodeCursor(q.cursor, isIdCursor).b : undefined;
  const rows = await listAuditRows(deps.db, { userId, beforeId, limit: limit + 1 });
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return {
    events: page.map((r) => {
      const own = r.actor_kind === 'user';
      return { id: r.id, type: r.type, at: r.at.toISOString(), actor: r.actor_kind, ip: own ? r.ip : null, user_agent: own ? r.user_agent : null, data: r.data };
    }),
    next_cursor: rows.length > limit && last ? encodeCursor({ b: last.id }) : null,
  };
}
