-- Events for other services (issue 10). The events extend the transactional outbox: an event row
-- and one delivery row per target are written in the transaction of the change (by the audit
-- follower), and the outbox worker delivers the delivery rows with the same lease discipline as the
-- mail (locked_until + attempts as the claim's identity).

-- Webhook endpoints registered through the admin API. Secrets are sealed with the SecretBox; the
-- previous secret keeps signing beside the new one until previous_secret_expires_at.
CREATE TABLE webhook_endpoints (
  id uuid PRIMARY KEY,
  url text NOT NULL,
  description text NOT NULL DEFAULT '',
  event_types text[] NOT NULL,
  secret_sealed text NOT NULL,
  previous_secret_sealed text,
  previous_secret_expires_at timestamptz,
  created_at timestamptz NOT NULL,
  -- first failure of the current run of failures (NULL after a success)
  failing_since timestamptz,
  -- set when failing_since is a day old: the endpoint is shown as failing until its next success
  marked_failing_at timestamptz
);

-- One row per event; id is the webhook-id (stable across retries), seq the order of creation.
CREATE TABLE events (
  id uuid PRIMARY KEY,
  seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  type text NOT NULL,
  occurred_at timestamptz NOT NULL,
  data jsonb NOT NULL
);

-- One row per event and target: target is a webhook endpoint's id, or 'amqp' for the broker.
-- Pending = delivered_at IS NULL AND failed_at IS NULL. Per target only the oldest pending row
-- (lowest seq) is ever claimed, so a target receives its events in order of creation.
CREATE TABLE event_deliveries (
  event_id uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
  target text NOT NULL,
  endpoint_id uuid REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
  seq bigint NOT NULL,
  created_at timestamptz NOT NULL,
  -- the age limit (WEBHOOK_MAX_AGE) counts from here: the event's time, or an admin's retry
  age_from timestamptz NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL,
  locked_until timestamptz,
  delivered_at timestamptz,
  failed_at timestamptz,
  last_attempt_at timestamptz,
  last_status_code integer,
  last_error text,
  PRIMARY KEY (event_id, target)
);
CREATE INDEX event_deliveries_pending_idx ON event_deliveries (target, seq) WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX event_deliveries_endpoint_idx ON event_deliveries (endpoint_id, seq);
