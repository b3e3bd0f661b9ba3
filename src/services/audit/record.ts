/**
 * The one way an audit entry is written: `recordSecurityEvent(tx, entry)`, called by the service that
 * makes a change, inside the transaction of that change, so the entry exists exactly when the change
 * committed (and a failed change leaves none). Followers registered with `registerAuditFollower` run
 * in the same transaction right after the insert (the events helper turns entries into outbox rows
 * there), so an event, too, exists exactly when its change does.
 */
import type { Queryable } from '../../db/database.ts';
import { insertAuditRow } from '../../db/repositories/audit/audit-log.ts';

/** Who made a change: the user themself, an admin person (id = their uuid), a program with ADMIN_API_KEY, or the service. */
export interface AuditActor {
  kind: 'user' | 'admin' | 'api_key' | 'system';
  /** The acting user's uuid for 'user' and 'admin'; absent for 'api_key' and 'system'. */
  id?: string;
}

/** The types the contract lists; other helpers may record more (same `area.event` shape). */
export const AUDIT_TYPES = [
  'user.created',
  'user.updated',
  'user.deleted',
  'login.succeeded',
  'login.failed',
  'login.locked',
  'mfa.enabled',
  'mfa.disabled',
  'passkey.added',
  'passkey.removed',
  'backup_codes.regenerated',
  'password.changed',
  'password.reset',
  'email.verified',
  'session.revoked',
  'refresh.reused',
  'admin.action',
] as const;

/** Shape of every audit type: lower-case `area.event`. */
export const AUDIT_TYPE_PATTERN = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/;

/** Who and from where, shared by every entry of one request. */
export interface AuditContext {
  actor: AuditActor;
  ip: string | null;
  userAgent: string | null;
}

/** What a service records. `data` holds non-secret facts only (see {@link scrubSecrets}). */
export interface SecurityEventEntry extends AuditContext {
  type: string;
  /** The user the entry is about (kept after the user is deleted); null when none is known. */
  userId: string | null;
  data?: Record<string, unknown>;
  /** When it happened: pass deps.clock(). Defaults to the process clock. */
  at?: Date;
}

/** An entry as written, handed to followers. */
export interface RecordedSecurityEvent extends Required<Omit<SecurityEventEntry, 'data'>> {
  id: string;
  data: Record<string, unknown>;
}

/** Runs in the transaction of the change, after the entry is inserted; a throw rolls the change back. */
export type AuditFollower = (tx: Queryable, event: RecordedSecurityEvent) => Promise<void>;

const followers = new Set<AuditFollower>();

/**
 * Adds a follower of every recorded entry (the same function twice counts once). Register at module
 * load or at start-up; returns a function that removes it again (tests).
 */
export function registerAuditFollower(fn: AuditFollower): () => void {
  followers.add(fn);
  return () => {
    followers.delete(fn);
  };
}

/** The followers, in registration order. */
export function auditFollowers(): readonly AuditFollower[] {
  return [...followers];
}

/**
 * Words that make a key name a secret's (passwords, codes, tokens, secrets, hashes, keys' private
 * parts, cookies): a secret must not reach the log even by a caller's mistake. Matched as whole words
 * of the key (`refresh_token`, `refreshToken`, `code-hash`), not inside other words: as substrings,
 * `pass` took `passkey_id` out of every passkey event.
 */
const SECRET_WORDS = new Set([
  'pass', 'password', 'passwd', 'passphrase', 'secret', 'secrets', 'token', 'tokens', 'code', 'codes', 'hash', 'hashes', 'private',
  'authorization', 'cookie', 'cookies', 'key', 'keys', 'apikey', 'signature', 'signatures', 'otpauth',
]);

/** Endings that make a run-together word a secret's (`refreshtoken`, `otpcode`). */
const SECRET_ENDINGS = /(token|code|secret|password|passwd|hash|cookie)$/;

/**
 * True when `key` names a secret: one of its words, digits aside (`password1`), is a secret word or
 * ends like one, or it is an otp URI (`otp_uri`, `otpauth_uri`). A time (`…_at`) is none. `key` counts
 * as a whole word only (`api_key`, `signing_key`), never as an ending: `passkey_id` is no secret.
 */
export function isSecretKey(key: string): boolean {
  const words = key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase().split(/[^a-z0-9]+/).filter(Boolean);
  if (words.at(-1) === 'at') return false;
  return words.some((w) => SECRET_WORDS.has(w.replace(/\d+$/, '')) || SECRET_ENDINGS.test(w.replace(/\d+$/, ''))) || words.join('_').includes('otp_uri');
}

/** A copy of `data` without keys that name secrets, at any depth. */
export function scrubSecrets(data: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(data)) {
    if (isSecretKey(key) || value === undefined) continue;
    out[key] = value !== null && typeof value === 'object' && !Array.isArray(value) ? scrubSecrets(value as Record<string, unknown>) : value;
  }
  return out;
}

/** Longest user agent kept (the sessions table keeps as much). */
const USER_AGENT_MAX = 512;

/**
 * Appends one entry in `tx` (the transaction of the change it records) and runs the followers there.
 * Never call it with the database outside the change's transaction when a change is being made:
 * an entry for a change that then rolls back would be a lie. Lone facts (a failed login changes no
 * row) may pass the database itself.
 */
export async function recordSecurityEvent(tx: Queryable, entry: SecurityEventEntry): Promise<RecordedSecurityEvent> {
  if (!AUDIT_TYPE_PATTERN.test(entry.type)) throw new Error(`audit type "${entry.type}" is not of the form area.event`);
  const at = entry.at ?? new Date();
  const data = scrubSecrets(entry.data ?? {});
  const userAgent = entry.userAgent?.slice(0, USER_AGENT_MAX) ?? null;
  const id = await insertAuditRow(tx, {
    type: entry.type,
    at,
    user_id: entry.userId,
    actor_kind: entry.actor.kind,
    actor_id: entry.actor.id ?? null,
    ip: entry.ip,
    user_agent: userAgent,
    data,
  });
  const event: RecordedSecurityEvent = { id, type: entry.type, at, userId: entry.userId, actor: entry.actor, ip: entry.ip, userAgent, data };
  // One after the other: a transaction is one connection.
  for (const follower of followers) await follower(tx, event);
  return event;
}

/** The context of something the user does themself from `client`. */
export function userContext(userId: string, client: { ip: string | null; userAgent: string | null }): AuditContext {
  return { actor: { kind: 'user', id: userId }, ip: client.ip, userAgent: client.userAgent };
}

/** The context of the service acting on its own (jobs, schedules). */
export const SYSTEM_CONTEXT: AuditContext = Object.freeze({ actor: Object.freeze({ kind: 'system' as const }), ip: null, userAgent: null });
