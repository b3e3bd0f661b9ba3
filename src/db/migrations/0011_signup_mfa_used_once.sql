-- The second factor chosen at sign-up (users.signup_mfa) is used once, at the first verification of
-- the address (services/email-otp.ts clears it there since this release). Accounts verified before
-- kept it, so an admin marking the address unverified and verified again turned e-mailed codes back
-- on after the user had turned them off. Forget it for every account whose address was ever verified:
-- verified now, or recorded as verified in the audit log (an admin may have unmarked it since).
UPDATE users SET signup_mfa = NULL
WHERE signup_mfa IS NOT NULL
  AND (email_verified OR EXISTS (SELECT 1 FROM audit_log a WHERE a.user_id = users.id AND a.type = 'email.verified'));
