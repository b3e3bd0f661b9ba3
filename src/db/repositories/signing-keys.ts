/**
 * SQL for the token-signing keys. Rows are only ever inserted (a rotation), re-sealed (the secret box
 * changed keys) or deleted (retired); a key's state is derived from its timestamps by the reader.
 */
import type { JWK } from 'jose';
import type { Queryable } from '../database.ts';

/** How a key came to be. */
export type SigningKeyOrigin = 'generated' | 'imported' | 'rotated' | 'scheduled';

/** A signing_keys row as stored. */
export interface SigningKeyRow {
  kid: string;
  seq: number;
  alg: string;
  public_jwk: JWK;
  private_key_sealed: string;
  origin: SigningKeyOrigin;
  created_at: Date;
  activates_at: Date;
}

export type NewSigningKey = Omit<SigningKeyRow, 'seq'>;

/** Arbitrary constant: the advisory lock that serialises key creation (first key, scheduled rotation) across instances. */
const SIGNING_KEYS_LOCK_ID = 727_274_004;

/** Takes the transaction-scoped lock every key-creating path holds (released at commit or rollback). */
export async function lockSigningKeys(tx: Queryable): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock($1)', [SIGNING_KEYS_LOCK_ID]);
}

/** Every key, oldest activation first (ties: the one made first). */
export async function listSigningKeys(tx: Queryable): Promise<SigningKeyRow[]> {
  const r = await tx.query<SigningKeyRow>(
    'SELECT kid, seq, alg, public_jwk, private_key_sealed, origin, created_at, activates_at FROM signing_keys ORDER BY activates_at, seq',
  );
  // node-postgres returns bigint as a string
  return r.rows.map((row) => ({ ...row, seq: Number(row.seq) }));
}

/** The creation time of the newest key (undefined when there is none). */
export async function newestKeyCreatedAt(tx: Queryable): Promise<Date | undefined> {
  const r = await tx.query<{ created_at: Date | null }>('SELECT max(created_at) AS created_at FROM signing_keys');
  return r.rows[0]?.created_at ?? undefined;
}

/** Inserts a key; returns the stored row. */
export async function insertSigningKey(tx: Queryable, k: NewSigningKey): Promise<SigningKeyRow> {
  const r = await tx.query<SigningKeyRow>(
    `INSERT INTO signing_keys (kid, alg, public_jwk, private_key_sealed, origin, created_at, activates_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     RETURNING kid, seq, alg, public_jwk, private_key_sealed, origin, created_at, activates_at`,
    [k.kid, k.alg, JSON.stringify(k.public_jwk), k.private_key_sealed, k.origin, k.created_at, k.activates_at],
  );
  const row = r.rows[0]!;
  return { ...row, seq: Number(row.seq) };
}

/** Replaces a key's sealed private part (re-sealed under the secret box's current key). */
export async function updateSealedPrivateKey(tx: Queryable, kid: string, sealed: string): Promise<void> {
  await tx.query('UPDATE signing_keys SET private_key_sealed = $2 WHERE kid = $1', [kid, sealed]);
}

/** Deletes the keys with these kids; returns how many went. */
export async function deleteSigningKeys(tx: Queryable, kids: readonly string[]): Promise<number> {
  if (kids.length === 0) return 0;
  const r = await tx.query('DELETE FROM signing_keys WHERE kid = ANY($1::text[])', [kids]);
  return r.rowCount;
}
