/**
 * AES-256-GCM sealing of TOTP secrets. The sealed text names its key id, so keys can rotate:
 * new secrets are sealed with the first key, old ones still open with any listed key.
 * Format: `v1.<kid>.<iv base64url>.<ciphertext+tag base64url>`; the kid is bound as associated data.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

/** Seals and opens small secrets under a set of keys. */
export class SecretBox {
  readonly #keys: Map<string, Buffer>;
  readonly currentKid: string;

  /** `keys` in order of preference; the first one seals. Each key is 32 bytes. */
  constructor(keys: ReadonlyArray<{ kid: string; key: Buffer }>) {
    if (keys.length === 0) throw new Error('SecretBox needs at least one key');
    for (const k of keys) {
      if (k.key.length !== 32) throw new Error(`encryption key ${k.kid} must be 32 bytes`);
      if (!/^[A-Za-z0-9_-]{1,32}$/.test(k.kid)) throw new Error(`encryption key id "${k.kid}" must be 1-32 of A-Za-z0-9_-`);
    }
    this.#keys = new Map(keys.map((k) => [k.kid, k.key]));
    this.currentKid = keys[0]!.kid;
  }

  /** Encrypts `plaintext` with the current key and a fresh 96-bit nonce. */
  seal(plaintext: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#keys.get(this.currentKid)!, iv);
    cipher.setAAD(Buffer.from(this.currentKid));
    const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()]);
    return `v1.${this.currentKid}.${iv.toString('base64url')}.${ct.toString('base64url')}`;
  }

  /** Decrypts a sealed value; throws when the key is unknown or the value was altered. */
  open(sealed: string): string {
    const [version, kid, ivText, ctText] = sealed.split('.');
    if (version !== 'v1' || !kid || !ivText || !ctText) throw new Error('not a sealed value');
    const key = this.#keys.get(kid);
    if (!key) throw new Error(`no encryption key with id ${kid}`);
    const data = Buffer.from(ctText, 'base64url');
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(ivText, 'base64url'));
    decipher.setAAD(Buffer.from(kid));
    decipher.setAuthTag(data.subarray(data.length - 16));
    return Buffer.concat([decipher.update(data.subarray(0, data.length - 16)), decipher.final()]).toString('utf8');
  }

  /** True when `sealed` was sealed with a key other than the current one (re-seal on use). */
  needsReseal(sealed: string): boolean {
    return sealed.split('.')[1] !== this.currentKid;
  }
}

/**
 * Parses `TOTP_ENCRYPTION_KEY`: a comma-separated list of `kid:base64key` (or one bare base64 key,
 * whose kid is derived from its digest). Keys are 32 bytes, base64 or base64url.
 */
export function parseEncryptionKeys(value: string): Array<{ kid: string; key: Buffer }> {
  return value
    .split(',')
    .map((part) => part.trim())
    .filter(Boolean)
    .map((part) => {
      const i = part.indexOf(':');
      const keyText = i >= 0 ? part.slice(i + 1) : part;
      const key = Buffer.from(keyText.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
      if (key.length !== 32) throw new Error('TOTP_ENCRYPTION_KEY keys must be 32 bytes, base64-encoded (openssl rand -base64 32)');
      const kid = i >= 0 ? part.slice(0, i) : createHash('sha256').update(key).digest('hex').slice(0, 8);
      return { kid, key };
    });
}
