-- Twofold schema. Plain PostgreSQL, applied identically to PGlite and to a server.
-- Secrets are never stored in the clear: passwords as argon2id, TOTP secrets sealed with
-- AES-256-GCM (the sealed text carries its key id), tokens and codes as HMAC-SHA256 digests.

CREATE TABLE users (
  id uuid PRIMARY KEY,
  username text NOT NULL,
  email text NOT NULL,
  full_name text,
  profile jsonb NOT NULL DEFAULT '{}'::jsonb,
  password_hash text NOT NULL,
  email_verified boolean NOT NULL DEFAULT false,
  is_active boolean NOT NULL DEFAULT true,
  roles text[] NOT NULL DEFAULT '{}',
  -- second factor asked for at sign-up ('email' is switched on once the address is verified)
  signup_mfa text,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  password_changed_at timestamptz
);
-- Case-insensitive uniqueness: "Alice" and "alice" are one user.
CREATE UNIQUE INDEX users_username_lower_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

-- One login = one session = one refresh-token family. Holds the id of the valid refresh token, never a token.
CREATE TABLE sessions (
  id uuid PRIMARY KEY,
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  current_jti uuid NOT NULL,
  previous_jti uuid,
  rotated_at timestamptz,
  amr text[] NOT NULL,
  aal text NOT NULL,
  user_agent text,
  ip text,
  created_at timestamptz NOT NULL,
  last_used_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  revoked_at timestamptz,
  revoked_reason text
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

-- TOTP: at most one active and one pending secret per user. last_used_step only grows (replay guard).
CREATE TABLE totp_factors (
  user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
  active_secret text,
  activated_at timestamptz,
  pending_secret text,
  pending_created_at timestamptz,
  last_used_step integer NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL
);

-- E-mailed one-time codes as a second factor: enabled_at NULL means enabling is pending confirmation.
CREATE TABLE email_otp_factors (
  user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
  enabled_at timestamptz,
  created_at timestamptz NOT NULL
);

-- The one live e-mailed code per (user, purpose); purpose is 'enable' or 'login:<challenge id>'.
-- A resend replaces code_hash and expires_at but keeps attempts.
CREATE TABLE email_otps (
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  purpose text NOT NULL,
  code_hash text NOT NULL,
  expires_at timestamptz NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  last_sent_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL,
  PRIMARY KEY (user_id, purpose)
);

CREATE TABLE backup_codes (
  id uuid PRIMARY KEY,
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  code_hash text NOT NULL,
  created_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX backup_codes_user_hash_key ON backup_codes (user_id, code_hash);

-- A pending second-factor login. The mfa+jwt carries this id; attempts are counted here.
CREATE TABLE mfa_challenges (
  id uuid PRIMARY KEY,
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  attempts integer NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  consumed_at timestamptz,
  user_agent text,
  ip text
);
CREATE INDEX mfa_challenges_user_id_idx ON mfa_challenges (user_id);

-- Single-use tokens of e-mailed links: purpose 'verify_email' or 'reset_password'.
CREATE TABLE email_tokens (
  id uuid PRIMARY KEY,
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  purpose text NOT NULL,
  token_hash text NOT NULL UNIQUE,
  email text NOT NULL,
  created_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  consumed_at timestamptz
);
CREATE INDEX email_tokens_user_purpose_idx ON email_tokens (user_id, purpose);

-- Transactional outbox: a mail is written in the same transaction as the change that causes it,
-- and delivered by the worker, which claims rows with FOR UPDATE SKIP LOCKED and a lease.
CREATE TABLE outbox (
  id uuid PRIMARY KEY,
  kind text NOT NULL,
  to_address text NOT NULL,
  subject text NOT NULL,
  text_body text NOT NULL,
  html_body text NOT NULL,
  created_at timestamptz NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL,
  locked_until timestamptz,
  sent_at timestamptz,
  failed_at timestamptz,
  last_error text
);
CREATE INDEX outbox_pending_idx ON outbox (next_attempt_at) WHERE sent_at IS NULL AND failed_at IS NULL;

