-- twofold:no-transaction
-- Indexes on two large live tables, built without stopping their writes (see migrate.ts): each
-- statement commits on its own, and the file runs again whole after a crash.
--
-- Sessions by user and creation: the mail quota's owner check (isOwnerAddress) reads a user's sessions
-- of the last 90 days, and the newest 200 of them; with sessions_user_id_idx alone it read every
-- session of the user (a parallel seq scan of the table at 150,000 sessions of one account). Its
-- leading column serves every lookup by user the old index served (revoking a user's sessions, the
-- foreign key's cascade), so that one goes, after the new one is built.
CREATE INDEX CONCURRENTLY IF NOT EXISTS sessions_user_created_idx ON sessions (user_id, created_at);
DROP INDEX CONCURRENTLY IF EXISTS sessions_user_id_idx;

-- Events by time: the prune job (pruneEvents) lists events older than the retention; at steady state
-- that is an hour of 30 days of events, and without the index every run read the whole table.
CREATE INDEX CONCURRENTLY IF NOT EXISTS events_occurred_at_idx ON events (occurred_at);
