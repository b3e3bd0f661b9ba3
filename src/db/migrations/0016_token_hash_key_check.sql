-- Values every instance of a deployment must agree on, recorded by the first server that opens the
-- database with them and compared by every later one at its start (services/deployment-checks.ts).
-- `token_hash_key` holds an HMAC under TOKEN_HASH_KEY of a fixed label, never the key: an instance
-- started with another key used to serve silently, refusing the others' backup codes and
-- verification links and keeping brute-force counters of its own. A small new table: no lock on
-- anything in use.
CREATE TABLE deployment_checks (
  name text PRIMARY KEY,
  value text NOT NULL,
  recorded_at timestamptz NOT NULL
);
