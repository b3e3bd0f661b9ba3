-- The address a user signed up from: until an account has logged in once, requests from there count as
-- the owner's own (mail-quota.ts), so strangers cannot use up the verification mails of a new account.
ALTER TABLE users ADD COLUMN signup_ip text;
