-- An admin's retry that meets an attempt in flight: the delivery was left to its worker, and if that
-- attempt failed it waited for its backoff (or was given up for its age), although the retry had
-- answered 202. The retry now marks the row; the attempt's failure then makes it due at once with the
-- fresh age limit. Cleared by every claim.
ALTER TABLE event_deliveries ADD COLUMN retry_asked boolean NOT NULL DEFAULT false;

-- Deliveries in flight (leased, still pending): few rows, read by every claim of a head so that an
-- endpoint never has two attempts in flight, even when an admin's retry makes an older event its head
-- while another instance is serving it. Leases are cleared when an attempt is recorded.
CREATE INDEX event_deliveries_leased_idx ON event_deliveries (target) WHERE locked_until IS NOT NULL AND delivered_at IS NULL AND failed_at IS NULL;

-- Deleting an endpoint: it is marked deleted first (an UPDATE, whose row lock does not conflict with
-- the FOR KEY SHARE of the changes announcing events), so it gets no new deliveries and is no longer
-- served; its backlog is then removed in batches, and the row last. A DELETE cascading over a large
-- backlog in one transaction held the row's lock meanwhile, and every login announcing an event to
-- it waited.
ALTER TABLE webhook_endpoints ADD COLUMN deleted_at timestamptz;

-- WebAuthn challenges by user (the per-user cap on registration challenges trims them on every
-- registration-options request) and by MFA challenge (the foreign keys' ON DELETE CASCADE looks
-- them up for every deleted user or MFA challenge): without these, each of those scanned the table.
CREATE INDEX webauthn_challenges_user_idx ON webauthn_challenges (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX webauthn_challenges_mfa_challenge_idx ON webauthn_challenges (mfa_challenge_id) WHERE mfa_challenge_id IS NOT NULL;
