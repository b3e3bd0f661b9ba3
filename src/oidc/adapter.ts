/**
 * The storage adapter of oidc-provider on our database (PGlite or PostgreSQL). Ids of every model are
 * stored as HMAC digests: a code, token, session or interaction id IS the bearer value, so a leaked
 * table must not yield live credentials. The engine also keeps that value inside the payload (`jti`,
 * and an interaction's `session.cookie`, the provider session's id): those are stored sealed with
 * the TOTP encryption keys (SecretBox) and opened when read. Codes and tokens bound to a provider session are only found
 * while the Twofold session that logged that provider session in is live (one session model).
 */
import { errors, type Adapter, type AdapterPayload } from 'oidc-provider';
import type { Deps } from '../deps.ts';
import { findBadInput } from '../bad-input.ts';
import {
  consumePayload, deleteByGrantId, deletePayload, findPayload, findPayloadBy, upsertPayload, type OidcPayloadRow,
} from '../db/repositories/oidc/payloads.ts';
import { findLinkState } from '../db/repositories/oidc/links.ts';
import { storedModelId } from '../services/oidc/stored-id.ts';
import { findRegisteredClient } from './clients-store.ts';

/** A payload as the table holds it. */
type StoredPayload = Record<string, unknown> & { jti?: unknown; jti_sealed?: unknown; session?: unknown };

/** Kinds whose payload carries a `sessionUid` that must stay live for the model to be usable. */
const SESSION_BOUND = new Set(['AuthorizationCode', 'AccessToken', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest']);

/** Builds the adapter class the provider instantiates once per model name. */
export function createAdapterClass(deps: Deps) {
  const digest = (id: string): string => storedModelId(deps, id);

  /** True when the Twofold session behind `sessionUid` is still live. */
  async function sessionLive(sessionUid: string): Promise<boolean> {
    const link = await findLinkState(deps.db, sessionUid, deps.clock());
    return link?.live === true;
  }

  async function toPayload(kind: string, row: OidcPayloadRow | undefined): Promise<AdapterPayload | undefined> {
    if (!row) return undefined;
    const payload = unsealed(row.payload as StoredPayload);
    if (SESSION_BOUND.has(kind) && typeof payload.sessionUid === 'string' && !(await sessionLive(payload.sessionUid))) return undefined;
    if (kind === 'Session' && payload.accountId && typeof payload.uid === 'string' && !(await sessionLive(payload.uid))) return undefined;
    return row.consumed_at ? { ...payload, consumed: Math.floor(row.consumed_at.getTime() / 1000) } : payload;
  }

  /** The payload as stored: the bearer values in it sealed (rows written before this stay readable). */
  function sealed(payload: AdapterPayload): StoredPayload {
    const { jti, ...rest } = payload as StoredPayload;
    const out: StoredPayload = { ...rest };
    if (typeof jti === 'string') out.jti_sealed = deps.secretBox.seal(jti);
    const session = payload.session as { cookie?: unknown } | undefined;
    if (session && typeof session.cookie === 'string') {
      const { cookie, ...other } = session;
      out.session = { ...other, cookie_sealed: deps.secretBox.seal(cookie) };
    }
    return out;
  }

  function unsealed(stored: StoredPayload): AdapterPayload {
    const { jti_sealed: jtiSealed, ...rest } = stored;
    const out: StoredPayload = { ...rest };
    if (typeof jtiSealed === 'string') out.jti = deps.secretBox.open(jtiSealed);
    const session = stored.session as { cookie_sealed?: unknown } | undefined;
    if (session && typeof session.cookie_sealed === 'string') {
      const { cookie_sealed: cookieSealed, ...other } = session;
      out.session = { ...other, cookie: deps.secretBox.open(cookieSealed) };
    }
    return out as AdapterPayload;
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
        payload: sealed(payload) as Record<string, unknown>,
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
      const deleted = await deletePayload(deps.db, this.kind, digest(id));
      // The engine destroys an interaction only when it resumes the authorization with its result,
      // after reading it: of several resumes at once, only the one whose delete removed the row goes on
      // (each would otherwise issue its own authorization code).
      if (!deleted && this.kind === 'Interaction') throw new errors.SessionNotFound('interaction already used');
    }

    async revokeByGrantId(grantId: string): Promise<void> {
      await deleteByGrantId(deps.db, grantId);
    }
  };
}
