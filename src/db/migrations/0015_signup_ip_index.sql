-- twofold:no-transaction
-- Users whose sign-up address is still kept, by creation: the retention job clears the address 90 days
-- after sign-up (clearOldSignupIps), every hour. Without an index each run read the whole users table
-- to find that nothing was due; with it, a run reads the users created in the last 90 days at most (the
-- only ones still holding an address). Built without stopping writes (see migrate.ts); a login's update
-- of last_login_at changes neither column, so it stays a HOT update.
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_signup_ip_created_idx ON users (created_at) WHERE signup_ip IS NOT NULL;
