/**
 * Who may make us mail an address, and how often (forgot-password). Counting only per address let a
 * stranger use up the owner's own budget: a few requests an hour for someone else's address and the
 * owner could not get a reset link at all. So:
 *
 * - in the request, per requester: `mail:ip` (all addresses) and `mail:pair` (this requester and this
 *   address) answer 429 — counted for every address, known or not, so a 429 reveals nothing;
 * - after the answer, once the account is known (deferred.ts): a request from the OWNER is counted on
 *   the owner's own budget (`mail:owner`); any other on the address's shared budget (`mail:address`),
 *   which caps what many strangers together can send. Over a deferred quota the mail is silently
 *   not sent (the 202 has gone out already, identical for every address).
 *
 * "Owner" means: the request comes from an IP address from which this account has logged in
 * successfully (a session of it, live or not, was created from that address) or signed up, within the
 * last OWNER_MEMORY_DAYS. The sign-up address matters for "resend verification": an account that must
 * verify its address before its first login has no session yet. A stranger elsewhere cannot borrow that; an owner on a new network shares the
 * address's budget with everyone else, as before.
 */
import type { Deps } from '../deps.ts';
import type { Queryable } from '../db/database.ts';
import { isAppError } from '../errors.ts';
import { normalizeIp } from '../security/ip-key.ts';

/** How far back a successful login from an address makes its requests the owner's. */
export const OWNER_MEMORY_DAYS = 90;

/** Of an IPv6 owner's recent logins, how many are compared by their /64 (the newest). */
const RECENT_NETWORKS = 200;

/** The in-request quotas of a mail request from `ip` for `address`; throws 429 when over. */
export async function consumeRequesterQuota(deps: Deps, ip: string, address: string): Promise<void> {
  await deps.limiter.consume('mail:ip', ip);
  // The requester as the IP limits count it (an IPv6 /64): one host holds a whole /64, and counting
  // its full addresses would give it a fresh pair budget per address.
  await deps.limiter.consume('mail:pair', `${normalizeIp(ip)}|${address.trim().toLowerCase()}`);
}

/**
 * True when the user has logged in or signed up from `ip` within OWNER_MEMORY_DAYS (see the module
 * comment). IPv6 addresses match by their /64, as the IP limits count them: privacy addresses
 * (RFC 8981) change daily inside the owner's /64, so an exact match missed most IPv6 owners.
 */
export async function isOwnerAddress(db: Queryable, userId: string, ip: string, now: Date): Promise<boolean> {
  const since = [now, OWNER_MEMORY_DAYS];
  const exact = await db.query(
    `SELECT 1 FROM sessions WHERE user_id = $1 AND ip = $2 AND created_at > $3::timestamptz - make_interval(days => $4)
     UNION ALL
     SELECT 1 FROM users WHERE id = $1 AND signup_ip = $2 AND created_at > $3::timestamptz - make_interval(days => $4)
     LIMIT 1`,
    [userId, ip, ...since],
  );
  if (exact.rows.length > 0) return true;
  const network = normalizeIp(ip);
  if (!network.endsWith('::/64')) return false;
  // Bounded: the newest logins' addresses (an account logging in every minute has 100,000s of sessions).
  const recent = await db.query<{ ip: string | null }>(
    `(SELECT ip FROM sessions WHERE user_id = $1 AND created_at > $2::timestamptz - make_interval(days => $3) ORDER BY created_at DESC LIMIT $4)
     UNION
     SELECT signup_ip FROM users WHERE id = $1 AND created_at > $2::timestamptz - make_interval(days => $3)`,
    [userId, ...since, RECENT_NETWORKS],
  );
  return recent.rows.some((r) => r.ip !== null && normalizeIp(r.ip) === network);
}

/**
 * The deferred quota of a mail to a known account: the owner's budget or the address's shared one.
 * False when over it (no mail is sent).
 */
export async function allowMailToAccount(deps: Deps, userId: string, address: string, ip: string): Promise<boolean> {
  const owner = await isOwnerAddress(deps.db, userId, ip, deps.clock());
  try {
    await deps.limiter.consume(owner ? 'mail:owner' : 'mail:address', address);
    return true;
  } catch (e) {
    if (isAppError(e, 'too_many_requests')) return false;
    throw e;
  }
}
