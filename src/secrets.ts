/**
 * The service's own secrets: TOTP encryption keys (the secret box), token-hash key, and the PEM key
 * offered as the first JWT signing key. In production they come from configuration; in development
 * they are generated once into DATA_DIR (mode 0600) and reused, so TOTP enrolments survive a restart.
 * The JWT signing keys themselves live in the database (services/signing-keys/), sealed in the box.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensurePrivateDir } from './private-dir.ts';
import type { Config } from './config.ts';
import { SecretBox, parseEncryptionKeys } from './crypto/secret-box.ts';
import { TokenHasher } from './crypto/token-hash.ts';
import type { InitialKey } from './services/signing-keys/open.ts';

/** Reads `file` or writes `make()` there first (never overwriting one written concurrently). */
function readOrCreate(file: string, make: () => string): string {
  if (!existsSync(file)) {
    try {
      writeFileSync(file, make(), { mode: 0o600, flag: 'wx' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  return readFileSync(file, 'utf8').trim();
}

function decodeKey(text: string, name: string): Buffer {
  const key = Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  if (key.length !== 32) throw new Error(`${name} must be 32 bytes, base64-encoded (openssl rand -base64 32)`);
  return key;
}

export interface Secrets {
  secretBox: SecretBox;
  tokenHasher: TokenHasher;
  /** JWT_PRIVATE_KEY_FILE (or the key file earlier development versions generated): imported if the database holds no key. */
  initialKey: InitialKey | undefined;
}

/** JWT_PRIVATE_KEY_FILE if set (it must exist), else DATA_DIR/jwt-signing-key.pem if an earlier version left one. */
function initialSigningKey(config: Config): InitialKey | undefined {
  if (config.jwtPrivateKeyFile) {
    if (!existsSync(config.jwtPrivateKeyFile)) throw new Error(`JWT private key file ${config.jwtPrivateKeyFile} does not exist`);
    return { pem: readFileSync(config.jwtPrivateKeyFile, 'utf8'), source: `JWT_PRIVATE_KEY_FILE (${config.jwtPrivateKeyFile})` };
  }
  // Upgrading a development data directory: its generated key stays the first key, so its tokens stay valid.
  const legacy = join(config.dataDir, 'jwt-signing-key.pem');
  if (existsSync(legacy)) return { pem: readFileSync(legacy, 'utf8'), source: legacy };
  return undefined;
}

/** Loads (or, outside production, generates) the file-based secrets. Throws with the setting's name on a bad value. */
export async function loadSecrets(config: Config): Promise<Secrets> {
  const generate = config.env !== 'production';
  if (generate) ensurePrivateDir(config.dataDir);
  const initialKey = initialSigningKey(config);

  const totpKeyText = config.totpEncryptionKey ?? readOrCreate(join(config.dataDir, 'totp-encryption.key'), () => `dev:${randomBytes(32).toString('base64')}\n`);
  let secretBox: SecretBox;
  try {
    secretBox = new SecretBox(parseEncryptionKeys(totpKeyText));
  } catch (e) {
    throw new Error(`TOTP_ENCRYPTION_KEY: ${(e as Error).message}`, { cause: e });
  }

  const hashKeyText = config.tokenHashKey ?? readOrCreate(join(config.dataDir, 'token-hash.key'), () => `${randomBytes(32).toString('base64')}\n`);
  const tokenHasher = new TokenHasher(decodeKey(hashKeyText, 'TOKEN_HASH_KEY'));
  return { secretBox, tokenHasher, initialKey };
}
