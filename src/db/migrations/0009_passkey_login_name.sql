-- The login name a passwordless sign-in's options were asked for (NULL for discoverable sign-ins).
-- A refused sign-in naming a credential nobody has (the decoy those options list for a name without
-- passkeys) counts against that name in the limiter, as a wrong password for it does, so that a
-- lock never tells a name with passkeys from one without (services/passkeys/login.ts).
ALTER TABLE webauthn_challenges ADD COLUMN login_name text;
