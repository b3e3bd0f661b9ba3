/**
 * One session model, enforced both ways. When a Twofold session ends (logout, logout-all, revocation,
 * password reset, deactivation, expiry) the provider sessions it logged in end too: their grants, codes
 * and tokens are deleted and every client with a back-channel logout URI is told. Token lookups already
 * refuse tokens of an ended session at once (adapter.ts); the sweep makes it final and sends the
 * notifications. It runs every OIDC_LOGOUT_SWEEP_INTERVAL_MS and right after this process commits a
 * revocation (services/sessions-ended.ts); the claim is SKIP LOCKED, so several instances never notify twice.
 */
import type Provider from 'oidc-provider';
import type { Deps } from '../deps.ts';
import { anyLinks, takeEndedLinks, type SessionLinkRow } from '../db/repositories/oidc/links.ts';
import { deleteByGrantId, deleteBySessionUid, deleteExpiredPayloads, findPayloadBy, grantIdsOfSession } from '../db/repositories/oidc/payloads.ts';
import type { LazyEngine } from './engine.ts';

/** Notifications are best effort (OpenID Back-Channel Logout 1.0 §2.8); failures are logged. */
async function endProviderSession(deps: Deps, provider: Provider, link: SessionLinkRow): Promise<void> {
  // Read directly: the adapter hides sessions whose Twofold session ended, which is this one; and
  // expired or not (the purge keeps linked ones): its expiry ended its single sign-on, not the
  // applications' refresh tokens, which the Twofold session's end must still announce.
  const session = (await findPayloadBy(deps.db, 'Session', 'uid', link.provider_session_uid, new Date(0)))?.payload;
  const authorizations = (session?.authorizations ?? {}) as Record<string, { sid?: string; grantId?: string }>;
  const grantIds = new Set(await grantIdsOfSession(deps.db, link.provider_session_uid));
  for (const a of Object.values(authorizations)) if (a.grantId) grantIds.add(a.grantId);
  for (const grantId of grantIds) await deleteByGrantId(deps.db, grantId);
  await deleteBySessionUid(deps.db, link.provider_session_uid);
  await sendBackchannelLogouts(deps, provider, link.user_id, Object.entries(authorizations).flatMap(([clientId, a]) => (a.sid ? [{ clientId, sid: a.sid }] : [])));
}

/**
 * Tells each application with a back-channel logout URI that its sign-in `sid` of `userId` ended.
 * Best effort (OpenID Back-Channel Logout 1.0 §2.8): a failure is logged, never retried or thrown.
 */
export async function sendBackchannelLogouts(deps: Deps, provider: Provider, userId: string, logouts: ReadonlyArray<{ clientId: string; sid: string }>): Promise<void> {
  await Promise.all(logouts.map(async ({ clientId, sid }) => {
    const client = await provider.Client.find(clientId).catch(() => undefined);
    if (!client?.backchannelLogoutUri) return;
    try {
      await (client as unknown as { backchannelLogout(sub: string, sid: string): Promise<void> }).backchannelLogout(userId, sid);
      deps.logger.info({ clientId, sid }, 'oidc back-channel logout sent');
    } catch (err) {
      deps.logger.warn({ err, clientId }, 'oidc back-channel logout failed');
    }
  }));
}

/** Deletes expired codes, tokens, sessions and interactions (lookups already ignore them). */
export async function purgeExpired(deps: Deps): Promise<number> {
  return deleteExpiredPayloads(deps.db, new Date());
}

/** Ends the provider sessions of ended Twofold sessions; returns how many. */
export async function sweepEndedSessions(deps: Deps, engine: LazyEngine): Promise<number> {
  // Links are made by logins through the provider, on this instance or another: until one exists there
  // is nothing to end, and an instance that never needed the provider does not load it to find that out.
  if (!engine.loaded && !(await anyLinks(deps.db))) return 0;
  const { provider, signingKey } = await engine.get();
  let total = 0;
  await signingKey.refresh();
  for (;;) {
    const links = await deps.db.transaction((tx) => takeEndedLinks(tx, deps.clock(), 50));
    for (const link of links) await endProviderSession(deps, provider, link);
    total += links.length;
    if (links.length < 50) return total;
  }
}

/** Runs the sweep on a timer and on demand, never two at once in this process. */
export class SessionEndSweeper {
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #lastPurgeMs = 0;
  /** Expired rows are purged at most this often. */
  static readonly PURGE_INTERVAL_MS = 60_000;
  constructor(private readonly deps: Deps, private readonly engine: LazyEngine) {}

  start(intervalMs: number): void {
    this.#timer = setInterval(() => void this.run(), intervalMs);
    this.#timer.unref();
  }

  /** Sweeps now (or once more right after the sweep in progress); resolves when done. */
  run(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = (async () => {
      do {
        this.#again = false;
        try {
          await sweepEndedSessions(this.deps, this.engine);
          if (Date.now() - this.#lastPurgeMs >= SessionEndSweeper.PURGE_INTERVAL_MS) {
            this.#lastPurgeMs = Date.now();
            await purgeExpired(this.deps);
          }
        } catch (err) {
          this.deps.logger.error({ err }, 'oidc session sweep failed');
        }
      } while (this.#again);
    })().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    await this.#running;
  }
}
