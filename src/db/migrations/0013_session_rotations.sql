-- The refresh tokens of a session rotated away before its previous one, newest first, with the time
-- each was rotated away (the same position in both arrays), at most 16, while the latest rotation is
-- within REFRESH_REUSE_GRACE_SECONDS of the one before it. Only previous_jti was kept: a token rotated
-- away 2 s ago was treated as a replay (the session revoked) once another refresh had followed it,
-- although the contract gives every token rotated away less than the grace period ago a fresh pair.
-- Constant defaults: no table rewrite on PostgreSQL 11 and later, so the exclusive lock is brief.
--
-- This migration also built an index on sessions (user_id, created_at) for the mail quota's owner
-- check. It is not here any more: the migration runs in one transaction, so either its exclusive lock
-- was held across the build (every token check waited, 1.8 s at 1.5 million sessions) or, with the
-- index first, its SHARE lock was upgraded and deadlocked with a request reading then writing sessions
-- (the migration was rolled back). An index on a large live table needs CREATE INDEX CONCURRENTLY,
-- outside a transaction, which the migration runner does not do yet.
ALTER TABLE sessions
  ADD COLUMN earlier_jtis uuid[] NOT NULL DEFAULT '{}',
  ADD COLUMN earlier_rotated_at timestamptz[] NOT NULL DEFAULT '{}';
