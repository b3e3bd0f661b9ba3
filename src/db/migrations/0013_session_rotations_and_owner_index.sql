-- Everything here runs in the one transaction of the migration run, and every lock it takes is held
-- until that commits. So the index is built first, under its SHARE lock (logins, refreshes and logouts,
-- which write sessions, wait for the build; every token check, which only reads them, goes on), and
-- the two statements that lock the table outright (ADD COLUMN, DROP INDEX: quick) come last. In the
-- other order the exclusive lock was held across the build, and every authenticated request waited.

-- A user's sessions by time: the mail quota's owner check reads the newest logins' addresses of the
-- last 90 days (an account logging in every minute has 100,000s of sessions, all read and sorted
-- through the user_id index for each reset mail asked for it). The index on user_id alone is a
-- prefix of this one, so it goes.
CREATE INDEX sessions_user_created_idx ON sessions (user_id, created_at);

-- The refresh tokens of a session rotated away before its previous one, newest first, with the time
-- each was rotated away (the same position in both arrays), at most 16, while the latest rotation is
-- within REFRESH_REUSE_GRACE_SECONDS of the one before it. Only previous_jti was kept: a token rotated
-- away 2 s ago was treated as a replay (the session revoked) once another refresh had followed it,
-- although the contract gives every token rotated away less than the grace period ago a fresh pair.
-- Constant defaults: no table rewrite on PostgreSQL 11 and later.
ALTER TABLE sessions
  ADD COLUMN earlier_jtis uuid[] NOT NULL DEFAULT '{}',
  ADD COLUMN earlier_rotated_at timestamptz[] NOT NULL DEFAULT '{}';

DROP INDEX sessions_user_id_idx;
