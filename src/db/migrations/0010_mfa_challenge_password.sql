-- The password_changed_at a login's password check saw, kept with the MFA challenge it opened: the
-- second step must compare against the password that was proven, not the one in force when it runs,
-- or a challenge won with the old password completes into a session after a reset (services/login.ts).
-- Challenges open at the upgrade keep NULL here; for a user who ever changed a password that no longer
-- matches, so they must log in again (a challenge lives minutes).
ALTER TABLE mfa_challenges ADD COLUMN password_changed_at timestamptz;
