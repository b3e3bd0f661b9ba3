/**
 * The RSA key test apps sign with: generated once per checkout and kept with the PGlite template in
 * node_modules/.cache (never committed). A 2048-bit key costs 0.1–0.5 s of CPU; generated in each of
 * the ~70 test processes, that was about 3 % of the suite. Tests about keys (rotation, import)
 * generate their own.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateRsaPem } from '../../src/crypto/jwt.ts';
import { ROOT } from './root.ts';

const FILE = join(ROOT, 'node_modules/.cache/twofold-test/test-signing-key.pem');

export async function cachedTestKeyPem(): Promise<string> {
  if (existsSync(FILE)) return readFileSync(FILE, 'utf8');
  const pem = await generateRsaPem();
  mkdirSync(join(FILE, '..'), { recursive: true });
  // Written aside and renamed: test processes starting together never read half a file.
  const tmp = `${FILE}.${process.pid}.tmp`;
  writeFileSync(tmp, pem, { mode: 0o600 });
  renameSync(tmp, FILE);
  return pem;
}
