/**
 * Events for other services. They are not written by the services that make changes: the audit core
 * hands every entry it records to its followers in the same transaction, and the follower here turns
 * the entries that concern other services into an event in the outbox (events + one delivery row
 * per subscribed webhook endpoint and for the broker). So nothing is audited and not announced, or
 * announced and not audited, and an event exists exactly when its change committed.
 */
import type { Clock } from '../../clock.ts';
import type { Config } from '../../config.ts';
import { newId } from '../../crypto/random.ts';
import type { Queryable } from '../../db/database.ts';
import { insertEvent } from '../../db/repositories/events/deliveries.ts';

/** The event catalogue: the audit types other services are told about (README "Events"). */
export const EVENT_TYPES = [
  'user.created',
  'user.updated',
  'user.deleted',
  'email.verified',
  'login.succeeded',
  'session.revoked',
  'password.changed',
  'password.reset',
  'mfa.enabled',
  'mfa.disabled',
  'passkey.added',
  'passkey.removed',
] as const;

export type EventType = (typeof EVENT_TYPES)[number];

const CATALOGUE: ReadonlySet<string> = new Set(EVENT_TYPES);

/** True when `type` is announced to other services. */
export function isEventType(type: string): type is EventType {
  return CATALOGUE.has(type);
}

/**
 * Keys never copied into an event's data, whatever an audit entry holds: an event leaves the service
 * and lands in other services' logs, so no password, code, token, secret, hash or key goes with it.
 */
const SECRET_KEY = /pass|secret|token|code|hash|otp|key|cookie|credential|challenge/i;

/** What the follower needs of an audit entry. */
export interface AuditedChange {
  type: string;
  userId?: string | null;
  data?: Record<string, unknown> | null;
}

/** The event's `data`: `user_id` plus the entry's non-secret data (scalars and arrays of scalars only). */
export function eventData(entry: AuditedChange): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (entry.userId) out.user_id = entry.userId;
  for (const [k, v] of Object.entries(entry.data ?? {})) {
    if (SECRET_KEY.test(k) || k === 'user_id') continue;
    const scalar = (x: unknown) => x === null || ['string', 'number', 'boolean'].includes(typeof x);
    if (scalar(v) || (Array.isArray(v) && v.every(scalar))) out[k] = v;
  }
  return out;
}

/** What publishing needs from the deps. */
export interface EventDeps {
  readonly config: Pick<Config, 'eventsAmqp'>;
  readonly clock: Clock;
}

/** Writes one event to the outbox in the caller's transaction; returns its id (the webhook-id). */
export async function enqueueEvent(tx: Queryable, deps: EventDeps, type: string, data: Record<string, unknown>, occurredAt = deps.clock()): Promise<string> {
  const id = newId();
  await insertEvent(tx, { id, type, occurredAt, data, amqp: deps.config.eventsAmqp.url !== undefined });
  return id;
}

/** The audit follower: an audited change of a catalogue type becomes an event, in the audit's transaction. */
export async function announceAudited(tx: Queryable, deps: EventDeps, entry: AuditedChange): Promise<void> {
  if (!isEventType(entry.type)) return;
  await enqueueEvent(tx, deps, entry.type, eventData(entry));
}

/** The JSON body of an event, as webhooks and the broker carry it (Standard Webhooks: `{type, timestamp, data}`). */
export function eventBody(e: { type: string; occurred_at: Date; data: Record<string, unknown> }): string {
  return JSON.stringify({ type: e.type, timestamp: e.occurred_at.toISOString(), data: e.data });
}
