/**
 * The service's own secrets: JWT signing key, TOTP encryption keys, token-hash key. In production they
 * come from configuration; in development they are generated once into DATA_DIR (mode 0600) and reused,
 * so tokens and TOTP enrolments survive a restart.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from './config.ts';
import { KeyStore } from './crypto/jwt.ts';
import { SecretBox, parseEncryptionKeys } from './crypto/secret-box.ts';
import { TokenHasher } from './crypto/token-hash.ts';

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
  keys: KeyStore;
  secretBox: SecretBox;
  tokenHasher: TokenHasher;
}

/** Loads (or, outside production, generates) every secret. Throws with the setting's name on a bad value. */
export async function loadSecrets(config: Config): Promise<Secrets> {
  const generate = config.env !== 'production';
  if (generate) mkdirSync(config.dataDir, { recursive: true });
  const keyFile = config.jwtPrivateKeyFile ?? join(config.dataDir, 'jwt-signing-key.pem');
  const keys = await KeyStore.loadOrGenerate(keyFile, generate && !config.jwtPrivateKeyFile, config.publicUrl, config.jwtAudience);

  const totpKeyText = config.totpEncryptionKey ?? readOrCreate(join(config.dataDir, 'totp-encryption.key'), () => `dev:${randomBytes(32).toString('base64')}\n`);
  let secretBox: SecretBox;
  try {
    secretBox = new SecretBox(parseEncryptionKeys(totpKeyText));
  } catch (e) {
    throw new Error(`TOTP_ENCRYPTION_KEY: ${(e as Error).message}`, { cause: e });
  }

  const hashKeyText = config.tokenHashKey ?? readOrCreate(join(config.dataDir, 'token-hash.key'), () => `${randomBytes(32).toString('base64')}\n`);
  const tokenHasher = new TokenHasher(decodeKey(hashKeyText, 'TOKEN_HASH_KEY'));
  return { keys, secretBox, tokenHasher };
}
