/**
 * Rotation of the signing keys: a new key is made in state `next` (activating after
 * JWT_KEY_ACTIVATION_DELAY), by hand (admin API, `twofold keys rotate`) or on the
 * JWT_KEY_ROTATION_INTERVAL schedule; retired keys are deleted. Nothing here logs anyone out: the
 * replaced key keeps verifying until every token it signed has expired.
 */
import { generateRsaPem, JWT_ALG, signingKeyFromPem, type KeyRing, type SigningKey } from '../../crypto/jwt.ts';
import type { Queryable } from '../../db/database.ts';
import {
  deleteSigningKeys, insertSigningKey, listSigningKeys, lockSigningKeys, newestKeyCreatedAt, type SigningKeyOrigin, type SigningKeyRow,
} from '../../db/repositories/signing-keys.ts';
import { recordSecurityEvent, type AuditContext } from '../audit/record.ts';
import { DbKeyRing, keyLifetimeSeconds } from './db-key-ring.ts';
import type { SigningKeyDeps } from './open.ts';
import { keyStates, type KeyState, type KeyStatus } from './states.ts';
import { recheckAdminCaller } from '../admin/authorize.ts';

/** A key as the admin API and the CLI show it (never its private part). */
export interface SigningKeyView {
  kid: string;
  alg: string;
  state: Exclude<KeyState, 'retired'>;
  created_at: string;
  activates_at: string;
  retires_at?: string;
}

function view(s: KeyStatus<SigningKeyRow>): SigningKeyView {
  return {
    kid: s.key.kid,
    alg: s.key.alg,
    state: s.state as SigningKeyView['state'],
    created_at: s.key.created_at.toISOString(),
    activates_at: s.key.activates_at.toISOString(),
    ...(s.retires_at ? { retires_at: s.retires_at.toISOString() } : {}),
  };
}

/** The served keys (next, current, previous) with their states now, read from the database itself. */
export async function listKeys(deps: SigningKeyDeps): Promise<SigningKeyView[]> {
  const statuses = keyStates(await listSigningKeys(deps.db), deps.clock(), keyLifetimeSeconds(deps.config));
  return statuses.filter((s) => s.state !== 'retired').map(view).reverse();
}

/** Called inside the rotation's transaction with the new key (the audit entry goes in the same transaction). */
export type OnKeyCreated = (tx: Queryable, key: SigningKeyView) => Promise<void>;

/** Records a rotation as `admin.action` (`keys.rotate`, or `keys.rotate_scheduled` for the schedule) by `ctx`. */
export function auditRotation(ctx: AuditContext, at: () => Date, action: 'keys.rotate' | 'keys.rotate_scheduled' = 'keys.rotate'): OnKeyCreated {
  return async (tx, key) => {
    // An admin person is checked again in the rotation's transaction (see recheckAdminCaller).
    await recheckAdminCaller(tx, ctx);
    await recordSecurityEvent(tx, { ...ctx, type: 'admin.action', userId: null, data: { action, kid: key.kid, activates_at: key.activates_at }, at: at() });
  };
}

/** Pass the deps' KeyStore ring so this instance serves the new key at once (others read it within their refresh). */
export interface RotateOptions {
  origin?: Extract<SigningKeyOrigin, 'rotated' | 'scheduled'>;
  onCreated?: OnKeyCreated;
  ring?: KeyRing;
}

/**
 * Makes a new key in state `next`. Concurrent rotations each make their own key (none is lost or
 * half-made; the one activating last ends up current, the others are served as previous until their
 * tokens can have expired): a rotation is one INSERT, and the states follow from the timestamps.
 */
export async function rotateSigningKey(deps: SigningKeyDeps, options: RotateOptions = {}): Promise<SigningKeyView> {
  // RSA generation takes ~100 ms of CPU: outside the transaction, so it holds no connection meanwhile.
  const key = await signingKeyFromPem(await generateRsaPem());
  const created = await deps.db.transaction(async (tx) => {
    const v = await insertNextKey(deps, tx, key, options.origin ?? 'rotated');
    await options.onCreated?.(tx, v);
    return v;
  });
  deps.logger.info({ kid: created.kid, activates_at: created.activates_at }, 'signing key rotated: new key in state next');
  if (options.ring instanceof DbKeyRing) await options.ring.reload(deps.clock());
  return created;
}

async function insertNextKey(deps: SigningKeyDeps, tx: Queryable, key: SigningKey, origin: SigningKeyOrigin): Promise<SigningKeyView> {
  const now = deps.clock();
  const row = await insertSigningKey(tx, {
    kid: key.kid,
    alg: JWT_ALG,
    public_jwk: key.jwk,
    private_key_sealed: deps.secretBox.seal(key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string),
    origin,
    created_at: now,
    activates_at: new Date(now.getTime() + deps.config.jwtKeyActivationDelaySeconds * 1000),
  });
  const rows = await listSigningKeys(tx);
  const status = keyStates(rows, now, keyLifetimeSeconds(deps.config)).find((s) => s.key.kid === row.kid)!;
  return view(status);
}

/**
 * The scheduled rotation: when JWT_KEY_ROTATION_INTERVAL is set and the newest key is older than it,
 * makes a new one. Checked again under the key lock, so of several instances ticking at once exactly
 * one rotates. Returns the new key, if any.
 */
export async function rotateIfDue(deps: SigningKeyDeps, options: Pick<RotateOptions, 'ring' | 'onCreated'> = {}): Promise<SigningKeyView | undefined> {
  const interval = deps.config.jwtKeyRotationIntervalSeconds;
  if (interval === undefined) return undefined;
  const due = (newest: Date | undefined) => newest !== undefined && newest.getTime() + interval * 1000 <= deps.clock().getTime();
  if (!due(await newestKeyCreatedAt(deps.db))) return undefined;
  const key = await signingKeyFromPem(await generateRsaPem());
  const created = await deps.db.transaction(async (tx) => {
    await lockSigningKeys(tx);
    if (!due(await newestKeyCreatedAt(tx))) return undefined;
    const v = await insertNextKey(deps, tx, key, 'scheduled');
    await options.onCreated?.(tx, v);
    return v;
  });
  if (created) {
    deps.logger.info({ kid: created.kid, activates_at: created.activates_at }, 'scheduled signing-key rotation: new key in state next');
    if (options.ring instanceof DbKeyRing) await options.ring.reload(deps.clock());
  }
  return created;
}

/** Deletes retired keys (their private parts must not linger); never the current one. Returns the kids deleted. */
export async function pruneRetiredKeys(deps: SigningKeyDeps): Promise<string[]> {
  return deps.db.transaction(async (tx) => {
    await lockSigningKeys(tx);
    const retired = keyStates(await listSigningKeys(tx), deps.clock(), keyLifetimeSeconds(deps.config))
      .filter((s) => s.state === 'retired')
      .map((s) => s.key.kid);
    await deleteSigningKeys(tx, retired);
    return retired;
  });
}
