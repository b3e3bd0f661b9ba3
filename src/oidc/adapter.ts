/**
 * The storage adapter of oidc-provider on our database (PGlite or PostgreSQL). Ids of every model are
 * stored as HMAC digests: a code, token, session or interaction id IS the bearer value, so a leaked
 * table must not yield live credentials. Codes and tokens bound to a provider session are only found
 * while the Twofold session that logged that provider session in is live (one session model).
 */
import { errors, type Adapter, type AdapterPayload } from 'oidc-provider';
import type { Deps } from '../deps.ts';
import { findBadInput } from '../bad-input.ts';
import {
  consumePayload, deleteByGrantId, deletePayload, findPayload, findPayloadBy, upsertPayload, type OidcPayloadRow,
} from '../db/repositories/oidc/payloads.ts';
import { findLinkState } from '../db/repositories/oidc/links.ts';
import { findRegisteredClient } from './clients-store.ts';

/** Kinds whose payload carries a `sessionUid` that must stay live for the model to be usable. */
const SESSION_BOUND = new Set(['AuthorizationCode', 'AccessToken', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest']);

/** Builds the adapter class the provider instantiates once per model name. */
export function createAdapterClass(deps: Deps) {
  const digest = (id: string): string => deps.tokenHasher.hash('oidc-id', id);

  /** True when the Twofold session behind `sessionUid` is still live. */
  async function sessionLive(sessionUid: string): Promise<boolean> {
    const link = await findLinkState(deps.db, sessionUid, deps.clock());
    return link?.live === true;
  }

  async function toPayload(kind: string, row: OidcPayloadRow | undefined): Promise<AdapterPayload | undefined> {
    if (!row) return undefined;
    const payload = row.payload as AdapterPayload;
    if (SESSION_BOUND.has(kind) && typeof payload.sessionUid === 'string' && !(await sessionLive(payload.sessionUid))) return undefined;
    if (kind === 'Session' && payload.accountId && typeof payload.uid === 'string' && !(await sessionLive(payload.uid))) return undefined;
    return row.consumed_at ? { ...payload, consumed: Math.floor(row.consumed_at.getTime() / 1000) } : payload;
  }

  return class DatabaseAdapter implements Adapter {
    readonly kind: string;
    constructor(kind: string) {
      this.kind = kind;
    }

    async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
      // A NUL or lone surrogate from a form body the engine parsed (a `state`, say) cannot be stored in
      // jsonb: the client's mistake, not a server error. Strings only: the engine nests what it parsed
      // (a `claims` request) as deep as it allows.
      const problem = findBadInput(payload, Infinity);
      if (problem !== undefined) throw new errors.InvalidRequest(`a parameter ${problem}`);
      const p = payload as AdapterPayload & { accountId?: string; clientId?: string };
      await upsertPayload(deps.db, {
        kind: this.kind,
        id: digest(id),
        payload: payload as Record<string, unknown>,
        grant_id: this.kind === 'Grant' ? id : (payload.grantId ?? null),
        uid: payload.uid ?? null,
        user_code: payload.userCode ?? null,
        session_uid: payload.sessionUid ?? null,
        account_id: p.accountId ?? null,
        client_id: p.clientId ?? null,
        // The engine counts in real seconds (epochTime), so expiry does too.
        expires_at: expiresIn ? new Date(Date.now() + expiresIn * 1000) : null,
      });
    }

    async find(id: string): Promise<AdapterPayload | undefined> {
      // Ids come from requests (a client_id in a form body); one PostgreSQL cannot store matches no row.
      if (this.kind === 'Client') return findBadInput(id) === undefined ? findRegisteredClient(deps, id) : undefined;
      return toPayload(this.kind, await findPayload(deps.db, this.kind, digest(id), new Date()));
    }

    async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
      if (findBadInput(userCode) !== undefined) return undefined;
      return toPayload(this.kind, await findPayloadBy(deps.db, this.kind, 'user_code', userCode, new Date()));
    }

    async findByUid(uid: string): Promise<AdapterPayload | undefined> {
      if (findBadInput(uid) !== undefined) return undefined;
      return toPayload(this.kind, await findPayloadBy(deps.db, this.kind, 'uid', uid, new Date()));
    }

    /**
     * Marks a code or refresh token used. The engine reads "unconsumed" before it calls this, so two
     * concurrent exchanges could both pass that read: the guarded UPDATE lets exactly one win, and the
     * loser is treated as the reuse it is (the grant is revoked, invalid_grant).
     */
    async consume(id: string): Promise<void> {
      const key = digest(id);
      if (await consumePayload(deps.db, this.kind, key, new Date())) return;
      const row = await findPayload(deps.db, this.kind, key, new Date(0));
      if (row?.grant_id) await deleteByGrantId(deps.db, row.grant_id);
      throw new errors.InvalidGrant(`${this.kind === 'RefreshToken' ? 'refresh token' : 'authorization code'} already used`);
    }

    async destroy(id: string): Promise<void> {
      await deletePayload(deps.db, this.kind, digest(id));
    }

    async revokeByGrantId(grantId: string): Promise<void> {
      await deleteByGrantId(deps.db, grantId);
    }
  };
}
