-- Token-signing keys (issue 9). A key's state is derived from these timestamps, never stored, so every
-- instance reading the table agrees on it at the same moment: the current key is the latest whose
-- activates_at has passed; later ones are `next`; earlier ones are `previous` until every token they
-- signed has expired, then retired (no longer served, and deleted by the key job).
-- The private key is PKCS#8 PEM sealed with AES-256-GCM under TOTP_ENCRYPTION_KEY (the secret box).
CREATE TABLE signing_keys (
  kid text PRIMARY KEY,
  -- tie-break for keys activating at the same instant: the later-made one wins
  seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  alg text NOT NULL DEFAULT 'RS256',
  public_jwk jsonb NOT NULL,
  private_key_sealed text NOT NULL,
  -- generated (at first start, by a rotation) or imported (JWT_PRIVATE_KEY_FILE, the old development key file)
  origin text NOT NULL CHECK (origin IN ('generated', 'imported', 'rotated', 'scheduled')),
  created_at timestamptz NOT NULL,
  activates_at timestamptz NOT NULL
);
CREATE INDEX signing_keys_activates_at_idx ON signing_keys (activates_at, seq);
