/**
 * Webhook endpoints, managed through the admin API: registration (URL checked against the SSRF
 * rules, secret generated, sealed, shown once), listing without secrets, deletion, secret rotation
 * with a grace period, the delivery log and retries.
 */
import type { Queryable } from '../../db/database.ts';
import type { Deps as AppDeps } from '../../deps.ts';
import { AppError, validationError } from '../../errors.ts';
import { newId, randomToken } from '../../crypto/random.ts';
import * as repo from '../../db/repositories/events/endpoints.ts';
import type { EndpointRow } from '../../db/repositories/events/endpoints.ts';
import * as deliveries from '../../db/repositories/events/deliveries.ts';
import { refuseHost, refuseResolvedHost } from '../../webhooks/ssrf.ts';
import { urlForLogs } from '../../webhooks/send.ts';
import type { SecretBox } from '../../crypto/secret-box.ts';
import { recordSecurityEvent, type AuditContext } from '../audit/record.ts';
import { recheckAdminCaller } from '../admin/authorize.ts';
import { EVENT_TYPES, isEventType } from './publish.ts';

/** What endpoint management needs. */
type Deps = Pick<AppDeps, 'config' | 'db' | 'clock' | 'secretBox'>;

/** What reading and writing the secrets takes of the secret box. */
type SecretBoxLike = Pick<SecretBox, 'seal' | 'open'>;

/** Every change an admin makes here is audited (`admin.action`) in the change's transaction. */
function audit(deps: Deps, tx: Queryable, ctx: AuditContext, action: string, data: Record<string, unknown>) {
  return recordSecurityEvent(tx, { ...ctx, type: 'admin.action', userId: null, data: { action, ...data }, at: deps.clock() });
}

/** An endpoint as the admin API shows it (never its secret). */
export interface EndpointView {
  id: string;
  url: string;
  events: string[];
  description: string;
  created_at: string;
  status: 'active' | 'failing';
  failing_since: string | null;
}

/** What registration takes. */
export interface NewEndpointInput {
  url: string;
  events: string[];
  description?: string;
}

const MAX_URL_LENGTH = 2048;

/** A fresh Standard Webhooks secret: `whsec_` and 32 random bytes in base64. */
function newSecret(): string {
  return `whsec_${Buffer.from(randomToken(32), 'base64url').toString('base64')}`;
}

function view(e: EndpointRow): EndpointView {
  return {
    id: e.id,
    url: e.url,
    events: e.event_types,
    description: e.description,
    created_at: e.created_at.toISOString(),
    status: e.marked_failing_at ? 'failing' : 'active',
    failing_since: e.failing_since ? e.failing_since.toISOString() : null,
  };
}

/** Throws 422 unless `raw` is an http(s) URL without credentials whose host may be reached. */
async function checkUrl(deps: Pick<Deps, 'config'>, raw: string): Promise<string> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw validationError('url', 'must be an absolute http or https URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw validationError('url', 'must be an http or https URL');
  if (url.username || url.password) throw validationError('url', 'must not carry a user name or password');
  // Port 0 parses, but nothing can be reached there: every delivery would fail until it is given up.
  if (url.port === '0') throw validationError('url', 'must not name port 0');
  if (url.href.length > MAX_URL_LENGTH) throw validationError('url', `must be at most ${MAX_URL_LENGTH} characters`);
  const allow = deps.config.webhooks.allowPrivate;
  const refused = refuseHost(url.hostname, allow) ?? (await refuseResolvedHost(url.hostname, allow));
  if (refused) throw validationError('url', `must be a public address (${refused}; WEBHOOK_ALLOW_PRIVATE=true allows it)`);
  url.hash = '';
  return url.href;
}

function checkEvents(events: string[]): string[] {
  const unique = [...new Set(events)];
  if (unique.length === 0) throw validationError('events', 'must list at least one event type, or "*"');
  if (unique.includes('*')) {
    if (unique.length > 1) throw validationError('events', '"*" stands alone');
    return unique;
  }
  const unknown = unique.filter((t) => !isEventType(t));
  if (unknown.length) throw validationError('events', `unknown event type ${unknown.map((t) => `"${t}"`).join(', ')}; known: ${EVENT_TYPES.join(', ')}`);
  return unique;
}

/** Registers an endpoint; the answer carries the secret, the only time it is shown. */
export async function createEndpoint(deps: Deps, ctx: AuditContext, input: NewEndpointInput): Promise<EndpointView & { secret: string }> {
  const url = await checkUrl(deps, input.url);
  const events = checkEvents(input.events);
  const secret = newSecret();
  const row = await deps.db.transaction(async (tx) => {
    await recheckAdminCaller(tx, ctx);
    const created = await repo.insertEndpoint(tx, {
      id: newId(),
      url,
      description: input.description ?? '',
      eventTypes: events,
      secretSealed: deps.secretBox.seal(secret),
      createdAt: deps.clock(),
    });
    await audit(deps, tx, ctx, 'webhook.created', { webhook_id: created.id, url: urlForLogs(url), events });
    return created;
  });
  return { ...view(row), secret };
}

export async function listEndpoints(deps: Deps): Promise<EndpointView[]> {
  return (await repo.listEndpoints(deps.db)).map(view);
}

async function mustFind(deps: Deps, id: string): Promise<EndpointRow> {
  const row = await repo.findEndpoint(deps.db, id);
  if (!row) throw new AppError('not_found', { detail: 'No webhook endpoint with this id.' });
  return row;
}

export { deleteEndpoint, finishEndpointDeletions } from './endpoint-deletion.ts';

/**
 * A new secret, shown once; the old one still signs (another `v1,` signature) for WEBHOOK_SECRET_GRACE.
 * So do the secrets an earlier rotation replaced, each until the end its own rotation announced: a
 * second rotation within the grace period must not cut the first one's short (receivers still on
 * the first secret would reject every delivery at once). Not refused instead: an admin rotating
 * again after a leak must get a fresh secret at once, and the contract has no code for a refusal.
 * The row is locked, so two rotations at once each keep the other's secret.
 */
export async function rotateEndpointSecret(deps: Deps, ctx: AuditContext, id: string): Promise<{ id: string; secret: string; previous_secret_expires_at: string }> {
  const secret = newSecret();
  const now = deps.clock();
  const expires = new Date(now.getTime() + deps.config.webhooks.secretGraceSeconds * 1000);
  await deps.db.transaction(async (tx) => {
    await recheckAdminCaller(tx, ctx);
    const row = await repo.lockEndpoint(tx, id);
    if (!row) throw new AppError('not_found', { detail: 'No webhook endpoint with this id.' });
    // Secrets sealed under a key TOTP_ENCRYPTION_KEY no longer lists cannot sign any more: rotating is
    // then the way out (it answered 500), with no grace for what cannot be opened.
    const inGrace = [...openable(() => [{ secret: deps.secretBox.open(row.secret_sealed), expiresAt: expires }]), ...openable(() => secretsInGrace(deps.secretBox, row, now))].slice(0, MAX_SECRETS_IN_GRACE);
    const lastEnd = inGrace.length ? new Date(Math.max(...inGrace.map((s) => s.expiresAt.getTime()))) : null;
    await repo.rotateSecret(tx, id, deps.secretBox.seal(secret), inGrace.length ? sealSecretsInGrace(deps.secretBox, inGrace) : null, lastEnd);
    await audit(deps, tx, ctx, 'webhook.secret_rotated', { webhook_id: id, previous_secret_expires_at: expires.toISOString() });
  });
  return { id, secret, previous_secret_expires_at: expires.toISOString() };
}

/** The secrets `open` gives, or none when they were sealed under a key no longer configured. */
function openable(open: () => SecretInGrace[]): SecretInGrace[] {
  try {
    return open();
  } catch {
    return [];
  }
}

/**
 * Most replaced secrets that sign at once (the newest ones): each adds a signature to every
 * delivery's headers, so rotating in a loop must not grow them without bound.
 */
export const MAX_SECRETS_IN_GRACE = 8;

/** A secret replaced by a rotation, still signing until `expiresAt`. */
export interface SecretInGrace {
  secret: string;
  expiresAt: Date;
}

/**
 * The replaced secrets of an endpoint still signing at `now`, newest first. previous_secret_sealed
 * holds them sealed together as a JSON list of `{secret, expires_at}`; a row rotated before there
 * was a list holds one bare `whsec_` secret, signing until previous_secret_expires_at.
 */
export function secretsInGrace(box: SecretBoxLike, row: Pick<EndpointRow, 'previous_secret_sealed' | 'previous_secret_expires_at'>, now: Date): SecretInGrace[] {
  if (!row.previous_secret_sealed || !row.previous_secret_expires_at || row.previous_secret_expires_at <= now) return [];
  const opened = box.open(row.previous_secret_sealed);
  const list = opened.startsWith('[')
    ? (JSON.parse(opened) as Array<{ secret: string; expires_at: string }>).map((s) => ({ secret: s.secret, expiresAt: new Date(s.expires_at) }))
    : [{ secret: opened, expiresAt: row.previous_secret_expires_at }];
  return list.filter((s) => s.expiresAt > now);
}

function sealSecretsInGrace(box: SecretBoxLike, list: readonly SecretInGrace[]): string {
  return box.seal(JSON.stringify(list.map((s) => ({ secret: s.secret, expires_at: s.expiresAt.toISOString() }))));
}

/** The endpoint's delivery log, newest first. */
export async function listEndpointDeliveries(deps: Deps, id: string, limit = 100) {
  await mustFind(deps, id);
  const rows = await deliveries.listDeliveries(deps.db, id, limit);
  const iso = (d: Date | null) => (d ? d.toISOString() : null);
  return rows.map((r) => ({
    event_id: r.event_id,
    type: r.type,
    status: r.status,
    attempts: r.attempts,
    last_status_code: r.last_status_code,
    last_error: r.last_error,
    delivered_at: iso(r.delivered_at),
    created_at: r.created_at.toISOString(),
    last_attempt_at: iso(r.last_attempt_at),
    next_attempt_at: iso(r.next_attempt_at),
    failed_at: iso(r.failed_at),
  }));
}

/** Why a delivery cannot be retried: there is none (404), or the receiver acknowledged it (409). */
function notRetriable(d: { delivered_at: Date | null } | undefined): AppError | undefined {
  if (!d) return new AppError('not_found', { detail: 'This endpoint has no delivery of that event.' });
  if (d.delivered_at) return new AppError('already_delivered', { detail: 'The receiver acknowledged this event; it is not sent again.' });
  return undefined;
}

/** Makes one undelivered delivery due now (a given-up one comes back); 409 once it was acknowledged. */
export async function retryDelivery(deps: Deps, ctx: AuditContext, id: string, eventId: string): Promise<void> {
  await mustFind(deps, id);
  const refused = notRetriable(await deliveries.findDelivery(deps.db, id, eventId));
  if (refused) throw refused;
  await deps.db.transaction(async (tx) => {
    await recheckAdminCaller(tx, ctx);
    // In flight right now: left to its worker and marked, so a failure of that attempt is retried at once.
    if ((await deliveries.requeue(tx, id, deps.clock(), eventId)) === 0) {
      // Acknowledged, or pruned with its event, since it was read above (never answered 202 for nothing).
      const d = await deliveries.findDelivery(tx, id, eventId);
      throw notRetriable(d?.delivered_at ? d : undefined)!;
    }
    await audit(deps, tx, ctx, 'webhook.retried', { webhook_id: id, event_id: eventId });
  });
}

/** Makes every undelivered delivery of the endpoint due now; returns how many. */
export async function retryAllDeliveries(deps: Deps, ctx: AuditContext, id: string): Promise<number> {
  await mustFind(deps, id);
  return deps.db.transaction(async (tx) => {
    await recheckAdminCaller(tx, ctx);
    const n = await deliveries.requeue(tx, id, deps.clock());
    await audit(deps, tx, ctx, 'webhook.retried', { webhook_id: id, requeued: n });
    return n;
  });
}

/**
 * Seals every webhook secret under the secret box's current key (at start, as the signing keys are):
 * an operator rotating TOTP_ENCRYPTION_KEY (new key first) who later drops the old key must not
 * strand them. One that cannot be opened is logged; its deliveries then fail with that reason (so the
 * admin sees it) until the secret is rotated.
 */
export async function resealEndpointSecrets(deps: Pick<AppDeps, 'db' | 'secretBox' | 'logger'>): Promise<number> {
  const box = deps.secretBox;
  const stale = (row: EndpointRow) => box.needsReseal(row.secret_sealed) || (row.previous_secret_sealed !== null && box.needsReseal(row.previous_secret_sealed));
  let resealed = 0;
  for (const { id } of (await repo.listEndpoints(deps.db)).filter(stale)) {
    await deps.db.transaction(async (tx) => {
      const row = await repo.lockEndpoint(tx, id);
      if (!row || !stale(row)) return;
      let secret: string;
      try {
        secret = box.seal(box.open(row.secret_sealed));
      } catch (err) {
        deps.logger.error({ err, webhookId: id }, "a webhook endpoint's secret cannot be opened with TOTP_ENCRYPTION_KEY: its deliveries fail until its secret is rotated");
        return;
      }
      let previous: string | null = null;
      try {
        if (row.previous_secret_sealed !== null) previous = box.seal(box.open(row.previous_secret_sealed));
      } catch {
        // Replaced secrets in their grace period that no key opens sign no more either way.
      }
      await repo.resealSecrets(tx, id, secret, previous);
      resealed += 1;
    });
  }
  return resealed;
}
