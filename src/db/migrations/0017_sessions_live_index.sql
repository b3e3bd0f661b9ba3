-- twofold:no-transaction
-- A user's live sessions by creation, for the session cap (MAX_SESSIONS_PER_USER): each login reads
-- whether the user has live sessions beyond the newest ones it keeps (hasSessionsOverLimit) and, if so,
-- ends them (revokeSessionsOverLimit), and the session
-- listing reads the newest. Without it both walked sessions_user_created_idx over every session the
-- user ever had: revoked ones stay until retention deletes them. Built without stopping writes (see
-- migrate.ts). Only revoked_at, which only a revocation sets, joins the indexed columns: neither
-- last_used_at nor expires_at, which every refresh changes, so a refresh's UPDATE stays HOT.
CREATE INDEX CONCURRENTLY IF NOT EXISTS sessions_live_user_created_idx ON sessions (user_id, created_at) WHERE revoked_at IS NULL;
