/** SQL for the audit log: insert, keyset listings (newest first) and the retention DELETE. Never UPDATE. */
import type { Queryable } from '../../database.ts';

/** An audit row as stored. `id` is a bigint, read as a string (JSON-safe, exact). */
export interface AuditRow {
  id: string;
  type: string;
  at: Date;
  user_id: string | null;
  actor_kind: 'user' | 'admin' | 'api_key' | 'system';
  actor_id: string | null;
  ip: string | null;
  user_agent: string | null;
  data: Record<string, unknown>;
}

export type NewAuditRow = Omit<AuditRow, 'id'>;

/** Appends one entry in `tx`; returns its id. */
export async function insertAuditRow(tx: Queryable, e: NewAuditRow): Promise<string> {
  const r = await tx.query<{ id: string }>(
    `INSERT INTO audit_log (type, at, user_id, actor_kind, actor_id, ip, user_agent, data)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id::text AS id`,
    [e.type, e.at, e.user_id, e.actor_kind, e.actor_id, e.ip, e.user_agent, JSON.stringify(e.data)],
  );
  return r.rows[0]!.id;
}

/** Filters of an audit listing; every one optional. `beforeId` is the keyset cursor (exclusive). */
export interface AuditFilter {
  userId?: string;
  types?: readonly string[];
  since?: Date;
  beforeId?: string;
  limit: number;
}

/**
 * Entries matching `f`, newest first (by id), at most `f.limit`. Each filter narrows a range scan of
 * one index (user or type, id DESC); the cursor is the last id seen, so pages never overlap and
 * entries written meanwhile (higher ids) never push older ones onto the next page.
 */
export async function listAuditRows(tx: Queryable, f: AuditFilter): Promise<AuditRow[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, value: unknown): void => {
    params.push(value);
    where.push(sql.replace('?', `$${params.length}`));
  };
  if (f.userId !== undefined) add('user_id = ?', f.userId);
  if (f.types !== undefined && f.types.length > 0) add('type = ANY(?::text[])', [...f.types]);
  if (f.since !== undefined) add('at >= ?', f.since);
  if (f.beforeId !== undefined) add('id < ?::bigint', f.beforeId);
  params.push(f.limit);
  // ORDER BY names the column, not the text alias: '9' sorts after '10' as text.
  const r = await tx.query<AuditRow>(
    `SELECT id::text AS id, type, at, user_id, actor_kind, actor_id, ip, user_agent, data FROM audit_log
     ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY audit_log.id DESC LIMIT $${params.length}`,
    params,
  );
  return r.rows;
}

/** Deletes up to `batch` entries older than `before`; returns how many went. Batched so a large backlog never holds one long lock. */
export async function deleteAuditRowsBefore(tx: Queryable, before: Date, batch: number): Promise<number> {
  const r = await tx.query(
    'DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < $1 ORDER BY at LIMIT $2)',
    [before, batch],
  );
  return r.rowCount;
}
