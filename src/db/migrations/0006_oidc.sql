-- OpenID Connect provider (oidc-provider) storage. One table holds every model the engine persists
-- (sessions, interactions, codes, tokens, grants), keyed by (kind, id); the columns beside the JSON
-- payload are the lookups the engine and our revocation need. Token values are never stored: the
-- engine's ids are the opaque values' identifiers only (the value is the id, checked by lookup), so the
-- ids of codes and tokens are stored as HMAC digests by the adapter.
CREATE TABLE oidc_payloads (
  kind text NOT NULL,
  id text NOT NULL,
  payload jsonb NOT NULL,
  grant_id text,
  uid text,
  user_code text,
  session_uid text,
  account_id text,
  client_id text,
  expires_at timestamptz,
  consumed_at timestamptz,
  PRIMARY KEY (kind, id)
);
CREATE INDEX oidc_payloads_grant_id_idx ON oidc_payloads (grant_id) WHERE grant_id IS NOT NULL;
CREATE INDEX oidc_payloads_uid_idx ON oidc_payloads (uid) WHERE uid IS NOT NULL;
CREATE INDEX oidc_payloads_session_uid_idx ON oidc_payloads (session_uid) WHERE session_uid IS NOT NULL;
CREATE INDEX oidc_payloads_account_client_idx ON oidc_payloads (account_id, client_id) WHERE account_id IS NOT NULL;
CREATE INDEX oidc_payloads_expires_at_idx ON oidc_payloads (expires_at);

-- A provider session (browser cookie of the engine) belongs to the Twofold session that logged it in:
-- when that session ends, the engine's session, grants and tokens end too (one session model).
CREATE TABLE oidc_session_links (
  provider_session_uid text PRIMARY KEY,
  session_id uuid NOT NULL,
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL
);
CREATE INDEX oidc_session_links_session_id_idx ON oidc_session_links (session_id);
CREATE INDEX oidc_session_links_user_id_idx ON oidc_session_links (user_id);

-- Consent remembered per (user, client): the scopes granted; deleting the row (account page,
-- "Connected applications") revokes the application's grants and tokens.
CREATE TABLE oidc_consents (
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  client_id text NOT NULL,
  scopes text[] NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  PRIMARY KEY (user_id, client_id)
);

-- Clients registered through the admin API (clients of OIDC_CLIENTS_FILE live in the file). The
-- secret is sealed with the TOTP encryption keys (AES-256-GCM): the engine compares it in clear.
CREATE TABLE oidc_clients (
  client_id text PRIMARY KEY,
  metadata jsonb NOT NULL,
  secret_sealed text,
  created_at timestamptz NOT NULL
);
