-- Passkeys (WebAuthn). A passkey is a second factor like confirmed TOTP, and also a login of its own.

-- The WebAuthn user handle: random per user (32 bytes, base64url), never the e-mail or username,
-- created with the user's first registration options. Discoverable credentials return it at login.
ALTER TABLE users ADD COLUMN webauthn_user_id text;
CREATE UNIQUE INDEX users_webauthn_user_id_key ON users (webauthn_user_id);

CREATE TABLE passkeys (
  id uuid PRIMARY KEY,
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  -- base64url credential id, as the browser reports it; unique across all users
  credential_id text NOT NULL,
  -- the credential's COSE public key, base64url (not a secret)
  public_key text NOT NULL,
  -- signature counter; only grows through a guarded UPDATE (a step back is refused as a clone)
  counter bigint NOT NULL DEFAULT 0,
  transports text[] NOT NULL DEFAULT '{}',
  -- 'singleDevice' (device-bound) or 'multiDevice' (may be synced); backed_up: synced right now
  device_type text NOT NULL,
  backed_up boolean NOT NULL,
  aaguid text NOT NULL,
  name text NOT NULL,
  created_at timestamptz NOT NULL,
  last_used_at timestamptz,
  -- signature-counter regressions seen for this credential (each refused the login)
  counter_regressions integer NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX passkeys_credential_id_key ON passkeys (credential_id);
CREATE INDEX passkeys_user_id_idx ON passkeys (user_id);

-- Single-use WebAuthn challenges, consumed by one DELETE … RETURNING. purpose: 'registration'
-- (user_id set), 'login' (passwordless: no user yet), 'mfa' (mfa_challenge_id set).
CREATE TABLE webauthn_challenges (
  id text PRIMARY KEY,
  challenge text NOT NULL,
  purpose text NOT NULL,
  user_id uuid REFERENCES users (id) ON DELETE CASCADE,
  mfa_challenge_id uuid REFERENCES mfa_challenges (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX webauthn_challenges_challenge_key ON webauthn_challenges (challenge);
CREATE INDEX webauthn_challenges_expires_idx ON webauthn_challenges (expires_at);
