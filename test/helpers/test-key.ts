/**
 * The RSA key test apps sign with: generated once per checkout and kept with the PGlite template in
 * node_modules/.cache (never committed). A 2048-bit key costs 0.1–0.5 s of CPU; generated in each of
 * the ~70 test processes, that was about 3 % of the suite. Tests about keys (rotation, import)
 * generate their own.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateRsaPem } from '../../src/crypto/jwt.ts';
import { TEST_CACHE_DIR, writeCacheFile } from './root.ts';

const NAME = 'test-signing-key.pem';

export async function cachedTestKeyPem(): Promise<string> {
  const file = join(TEST_CACHE_DIR, NAME);
  if (existsSync(file)) return readFileSync(file, 'utf8');
  const pem = await generateRsaPem();
  writeCacheFile(NAME, pem, 0o600);
  return pem;
}
