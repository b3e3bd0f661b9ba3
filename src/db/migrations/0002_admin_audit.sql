-- Administration and the audit log (issue 9). users.roles exists since 0001.

-- The audit log: one row per security-relevant change, written in the transaction of the change.
-- user_id has no foreign key on purpose: entries outlive the user they concern (a deleted user's
-- entries keep the uuid). id is the order of insertion and the cursor of every listing.
CREATE TABLE audit_log (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  type text NOT NULL,
  at timestamptz NOT NULL,
  user_id uuid,
  actor_kind text NOT NULL CHECK (actor_kind IN ('user', 'admin', 'api_key', 'system')),
  actor_id text,
  ip text,
  user_agent text,
  data jsonb NOT NULL DEFAULT '{}'::jsonb
);
-- A person's own entries and the admin filter by user, newest first.
CREATE INDEX audit_log_user_idx ON audit_log (user_id, id DESC);
-- The admin filter by type, newest first.
CREATE INDEX audit_log_type_idx ON audit_log (type, id DESC);
-- The retention job deletes by age.
CREATE INDEX audit_log_at_idx ON audit_log (at);

-- Append-only: no statement may change an entry. Rows leave only by the retention job's DELETE.
CREATE FUNCTION audit_log_refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_update();

-- Admin user search: prefix of the lower-cased username or e-mail, in keyset order. COLLATE "C"
-- (byte order) makes `>= prefix AND < prefix || U+10FFFF` and the cursor comparison one range scan
-- whatever the database collation; the unique indexes of 0001 use the database collation.
CREATE INDEX users_username_search_idx ON users ((lower(username) COLLATE "C"), id);
CREATE INDEX users_email_search_idx ON users ((lower(email) COLLATE "C"), id);

-- Last successful login, shown to admins (set in the login transaction).
ALTER TABLE users ADD COLUMN last_login_at timestamptz;
-- Set while an admin has deactivated the account: the e-mail verification link, which activates accounts
-- created inactive (REQUIRE_EMAIL_VERIFICATION), must not undo an admin's deactivation.
ALTER TABLE users ADD COLUMN deactivated_at timestamptz
