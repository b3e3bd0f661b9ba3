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
import { afterCommit } from '../../db/after-commit.ts';
import type { Queryable } from '../../db/database.ts';
import { insertEvent } from '../../db/repositories/events/deliveries.ts';
import { registerAuditFollower, scrubSecrets, type RecordedSecurityEvent } from '../audit/record.ts';

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

/** What the follower needs of an audit entry (its data is already scrubbed of secrets by the audit core). */
export interface AuditedChange {
  type: string;
  userId?: string | null;
  at?: Date;
  data?: Record<string, unknown> | null;
}

/** The event's `data`: `user_id` plus the entry's data, scrubbed of secret-named keys (again: an event leaves the service). */
export function eventData(entry: AuditedChange): Record<string, unknown> {
  return { ...(entry.userId ? { user_id: entry.userId } : {}), ...scrubSecrets(entry.data ?? {}) };
}

/** What publishing needs from the deps. */
export interface EventDeps {
  readonly config: Pick<Config, 'eventsAmqp'>;
  readonly clock: Clock;
}

/** Writes one event to the outbox in the caller's transaction; returns its id (the webhook-id). */
export async function enqueueEvent(tx: Queryable, deps: EventDeps, type: string, data: Record<string, unknown>, occurredAt = deps.clock()): Promise<string> {
  const id = newId();
  await queue(tx, { id, type, occurredAt, data, amqp: deps.config.eventsAmqp.url !== undefined });
  return id;
}

/** Called after the commit of every transaction that queued deliveries (instance.ts: wakes its outbox worker). */
const listeners = new Set<() => void>();

/**
 * Calls `fn` each time a transaction of this process that queued event deliveries has committed, so
 * that they go out at once rather than at the next poll; returns a function that stops it. Other
 * instances find the deliveries at their next poll.
 */
export function onEventsQueued(fn: () => void): () => void {
  listeners.add(fn);
  return () => {
    listeners.delete(fn);
  };
}

function notifyQueued(): void {
  for (const fn of listeners) fn();
}

/** Inserts the event and its deliveries in `tx`; once that commits, tells the listeners when there is something to deliver. */
async function queue(tx: Queryable, e: Parameters<typeof insertEvent>[1]): Promise<void> {
  if ((await insertEvent(tx, e)) > 0 && listeners.size > 0) afterCommit(tx, notifyQueued);
}

/**
 * The configuration the follower announces with. The audit core's followers are process-wide and a
 * process serves one configuration, so it is kept here, set by {@link announceEvents}; a test that
 * builds apps of different configurations in one process gets the latest one's.
 */
let announcing: EventDeps['config'] | undefined;

/**
 * Audited changes of this process become events from now on, queued for the broker exactly when
 * `config` sets EVENTS_AMQP_URL (as {@link enqueueEvent} does). Called by openDeps, which the server
 * and every CLI command go through, and by buildApp for deps made by hand (tests); the follower is
 * registered once per process however often this is called (the audit core keeps a set).
 */
export function announceEvents(config: EventDeps['config']): void {
  announcing = config;
  registerAuditFollower(announceAudited);
}

/**
 * The audit follower (registered by {@link announceEvents}): an audited change of a catalogue type
 * becomes an event, in the audit's transaction, at the audit entry's time.
 */
export async function announceAudited(tx: Queryable, entry: RecordedSecurityEvent | AuditedChange): Promise<void> {
  if (!isEventType(entry.type)) return;
  const amqp = announcing?.eventsAmqp.url !== undefined;
  await queue(tx, { id: newId(), type: entry.type, occurredAt: entry.at ?? new Date(), data: eventData(entry), amqp });
}

/** The JSON body of an event, as webhooks and the broker carry it (Standard Webhooks: `{type, timestamp, data}`). */
export function eventBody(e: { type: string; occurred_at: Date; data: Record<string, unknown> }): string {
  return JSON.stringify({ type: e.type, timestamp: e.occurred_at.toISOString(), data: e.data });
}
