/**
 * `npm run lint:openapi`: builds the app (in-memory PGlite, no listener), writes its OpenAPI document to
 * a temporary file and lints it with Redocly's recommended rules; the exit code is Redocly's (errors fail).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildTestApp } from '../test/helpers/app.ts';
import { createTestDatabase } from '../test/helpers/pg-database.ts';

const database = await createTestDatabase('pglite');
const { app } = await buildTestApp(undefined, database.db, { env: { PUBLIC_URL: 'http://localhost:8000' } });
const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json();
await app.close();
await database.cleanup();

const dir = mkdtempSync(join(tmpdir(), 'twofold-openapi-'));
const file = join(dir, 'openapi.json');
writeFileSync(file, JSON.stringify(doc, null, 2));
const result = spawnSync(fileURLToPath(new URL('../node_modules/.bin/redocly', import.meta.url)), ['lint', file, '--format=stylish'], { stdio: 'inherit' });
rmSync(dir, { recursive: true, force: true });
process.exit(result.status ?? 1);
