/**
 * E-mail verification: the link mailed at sign-up (and on request), and its single-use token.
 *
 * Activation follows the original Django service: with REQUIRE_EMAIL_VERIFICATION=true an account is
 * created inactive and the first successful verification activates it; without it accounts are
 * active from the start and verification only records that the address is proven.
 */
import type { Deps } from '../deps.ts';
import type { Queryable } from '../db/database.ts';
import { AppError } from '../errors.ts';
import { newId, randomToken } from '../crypto/random.ts';
import { consumeEmailToken, findLiveEmailToken, insertEmailToken, voidEmailTokens, type EmailTokenPurpose } from '../db/repositories/email-tokens.ts';
import { findUserByEmail, findUserById, lockUserForUpdate, markEmailVerifiedOnce, type UserRow } from '../db/repositories/users.ts';
import { enqueueMail } from '../mail/outbox.ts';
import { runDeferred } from './deferred.ts';
import { allowMailToAccount, consumeRequesterQuota } from './mail-quota.ts';
import { enableEmailOtpAfterVerification } from './email-otp.ts';
import { recordSecurityEvent, userContext } from './audit/record.ts';
import type { ClientInfo } from './tokens.ts';

/** Path of the verification link; GET (from the mail) and POST (from a page or a client) both verify. */
export const VERIFY_EMAIL_PATH = '/api/v1/user/email/verify';

/** Random bytes in a link token: 256 bits, beyond any online or offline guessing. */
const LINK_TOKEN_BYTES = 32;

/** A fresh link token (base64url) and the digest stored for it. */
export function newLinkToken(deps: Pick<Deps, 'tokenHasher'>, purpose: EmailTokenPurpose): { token: string; hash: string } {
  const token = randomToken(LINK_TOKEN_BYTES);
  return { token, hash: linkTokenHash(deps, purpose, token) };
}

/** Stores the digest of a link token for the user's current address, valid for `ttlSeconds`. */
export async function storeLinkToken(
  tx: Queryable,
  deps: Pick<Deps, 'clock'>,
  user: Pick<UserRow, 'id' | 'email'>,
  purpose: EmailTokenPurpose,
  hash: string,
  ttlSeconds: number,
): Promise<void> {
  const now = deps.clock();
  await insertEmailToken(tx, {
    id: newId(),
    user_id: user.id,
    purpose,
    token_hash: hash,
    email: user.email,
    created_at: now,
    expires_at: new Date(now.getTime() + ttlSeconds * 1000),
  });
}

/** The stored digest of a link token (HMAC under the server key, labelled by purpose). */
export function linkTokenHash(deps: Pick<Deps, 'tokenHasher'>, purpose: EmailTokenPurpose, token: string): string {
  return deps.tokenHasher.hash(purpose, token);
}

/**
 * Creates a verification token for the user's current address and queues the mail with its link, in
 * the caller's transaction: the token and the mail exist only if the surrounding change commits.
 */
export async function queueVerificationMail(deps: Deps, tx: Queryable, user: Pick<UserRow, 'id' | 'username' | 'email'>): Promise<void> {
  const ttlSeconds = deps.config.emailVerificationTtlSeconds;
  const { token, hash } = newLinkToken(deps, 'verify_email');
  await storeLinkToken(tx, deps, user, 'verify_email', hash, ttlSeconds);
  await enqueueMail(tx, deps, {
    kind: 'verify_email',
    to: user.email,
    data: {
      username: user.username,
      link: `${deps.config.publicUrl}${VERIFY_EMAIL_PATH}?token=${encodeURIComponent(token)}`,
      // Rounded down: a mail must never promise more time than the link has.
      expiresInHours: Math.max(1, Math.floor(ttlSeconds / 3600)),
    },
  });
}

function invalidToken(): AppError {
  return new AppError('invalid_or_expired_token', { detail: 'This verification link is invalid, expired or already used. Ask for a new one.' });
}

/**
 * Verifies the address a token was mailed to. The token is consumed by a guarded update, so of
 * concurrent requests with one token exactly one succeeds. The first verification of an address also
 * activates the account when verification is required, voids the user's other verification links
 * and, when the user chose e-mailed codes at sign-up, makes them the second factor. A token of an
 * address the user no longer has is refused.
 */
export async function verifyEmail(deps: Deps, token: string, client: ClientInfo): Promise<{ email_verified: true }> {
  const hash = linkTokenHash(deps, 'verify_email', token);
  const verified = await deps.db.transaction(async (tx) => {
    const now = deps.clock();
    // The user's row before the link's, as every transaction touching a user's links takes them
    // (reset links too): two links of one user verified at once each held its own link and then
    // waited for the other's, which voiding the user's other links locks (a deadlock, 500).
    const live = await findLiveEmailToken(tx, 'verify_email', hash, now);
    if (!live) return false;
    await lockUserForUpdate(tx, live.user_id);
    const row = await consumeEmailToken(tx, 'verify_email', hash, now);
    if (!row) return false;
    const user = await markEmailVerifiedOnce(tx, row.user_id, row.email, now, deps.config.requireEmailVerification);
    if (user) {
      await voidEmailTokens(tx, user.id, 'verify_email');
      // The link's holder proved the address; recorded as the user.
      const ctx = userContext(user.id, client);
      await recordSecurityEvent(tx, { ...ctx, type: 'email.verified', userId: user.id, data: { is_active: user.is_active }, at: now });
      if (user.signup_mfa === 'email') await enableEmailOtpAfterVerification(deps, tx, user, ctx);
      return true;
    }
    // Nothing changed: fine if the address was verified already (a second link), not if it changed since.
    const current = await findUserById(tx, row.user_id);
    return current !== undefined && current.email_verified && current.email.toLowerCase() === row.email.toLowerCase();
  });
  if (!verified) throw invalidToken();
  return { email_verified: true };
}

/**
 * Sends a new verification link to `email` if it belongs to an account whose address is unverified.
 * The requester's quotas are counted for every address, known or not, and the lookup runs after the
 * answer (see deferred.ts), so neither the status nor the timing tells whether the address has an
 * account. As for reset links, the owner's budget is kept apart from strangers' (mail-quota.ts).
 * Earlier links stay valid until they expire: the user may open whichever mail arrives first.
 */
export async function resendVerification(deps: Deps, email: string, ip: string): Promise<void> {
  const address = email.trim();
  await consumeRequesterQuota(deps, ip, address);
  runDeferred(deps, 'resending a verification e-mail', async () => {
    const user = await findUserByEmail(deps.db, address);
    if (!user || user.email_verified) return;
    if (!(await allowMailToAccount(deps, user.id, address, ip))) return;
    await deps.db.transaction((tx) => queueVerificationMail(deps, tx, user));
  });
}
