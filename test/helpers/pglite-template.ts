/**
 * Fresh PGlite databases for tests, fast. Starting PGlite from nothing runs initdb inside WebAssembly
 * (seconds of CPU each time, tens of seconds on a busy 2-core machine), and the suites open dozens of
 * databases. So each test process compiles PGlite's WebAssembly once, and every new database starts
 * from a data-directory snapshot of a freshly initialised and migrated one. Each test still gets its
 * own, independent database: only the starting bytes are shared.
 *
 * The snapshot is cached in node_modules/.cache (never committed) under a hash of PGlite's version, the
 * migration runner and every migration file, so a changed or added migration builds a new one (by
 * running the real migrations on a real initdb). Writes are atomic (temp file, then rename), so test
 * processes starting together never read half a file.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PGlite, type PGliteOptions } from '@electric-sql/pglite';
import type { Database } from '../../src/db/database.ts';
import { migrate } from '../../src/db/migrate.ts';
import { openPglite, pgliteDatabase } from '../../src/db/pglite.ts';
import { ROOT, TEST_CACHE_DIR, writeCacheFile } from './root.ts';

const MIGRATIONS = join(ROOT, 'src/db/migrations');

let engine: Promise<PGliteOptions> | undefined;
let template: Promise<Blob> | undefined;

/**
 * `bytes` as the Blob PGlite reads its file-system bundle and `loadDataDir` from: PGlite only calls
 * arrayBuffer() (and reads `type`), and this one answers with one plain copy of the bytes. Node 20's
 * Blob.arrayBuffer() copies through a stream of small chunks, gathered and joined: for the template
 * and the 6 MB bundle at every database open that was about 90 s of the suite's CPU (a sixth;
 * profiled with --cpu-prof). A copy each time, as a Blob gives: the file system may keep the buffer.
 */
function bytesAsBlob(bytes: Uint8Array, type = ''): Blob {
  return { type, size: bytes.byteLength, arrayBuffer: () => Promise.resolve(bytes.slice().buffer) } as unknown as Blob;
}

/** PGlite's WebAssembly modules, compiled once per process, and its file-system bundle. */
function pgliteEngine(): Promise<PGliteOptions> {
  engine ??= (async () => {
    const dist = new URL('./', import.meta.resolve('@electric-sql/pglite'));
    const [pglite, initdb, bundle] = await Promise.all(['pglite.wasm', 'initdb.wasm', 'pglite.data'].map((f) => readFile(new URL(f, dist))));
    const [pgliteWasmModule, initdbWasmModule] = await Promise.all([WebAssembly.compile(pglite!), WebAssembly.compile(initdb!)]);
    return { pgliteWasmModule, initdbWasmModule, fsBundle: bytesAsBlob(bundle!) };
  })();
  return engine;
}

/**
 * Set in the template (postgresql.auto.conf), so every test database starts with it. PostgreSQL's
 * default of 128 MB is memory each new PGlite instance touches page by page: with 16 MB a test
 * database opens in about half the CPU time (1.4 s → 0.8 s per open, measured), and the test
 * databases are a few MB.
 */
const TEMPLATE_SETTINGS = "ALTER SYSTEM SET shared_buffers = '16MB'";

/**
 * Also run on the template: the copies of an empty database that CREATE DATABASE starts from. No test
 * creates a database on PGlite (it has one connection, to one database), and without them the
 * snapshot holds 500 files and 26 MB instead of 1,100 and 41 MB, which every open unpacks.
 */
const TEMPLATE_TRIM = [
  "UPDATE pg_database SET datistemplate = false WHERE datname IN ('template0', 'template1')",
  'DROP DATABASE template0',
  'DROP DATABASE template1',
  'CHECKPOINT',
];

/** The cache key: anything that changes what a migrated database holds. */
function templateKey(): string {
  const h = createHash('sha256');
  h.update(TEMPLATE_SETTINGS);
  for (const statement of TEMPLATE_TRIM) h.update(statement);
  h.update(readFileSync(join(ROOT, 'node_modules/@electric-sql/pglite/package.json')));
  h.update(readFileSync(join(ROOT, 'src/db/migrate.ts')));
  for (const f of readdirSync(MIGRATIONS).filter((n) => n.endsWith('.sql')).sort()) {
    h.update(f);
    h.update(readFileSync(join(MIGRATIONS, f)));
  }
  return h.digest('hex').slice(0, 16);
}

/** The snapshot of a fresh, migrated database (built and cached on first use). */
function migratedTemplate(): Promise<Blob> {
  template ??= (async () => {
    const name = `pglite-migrated-${templateKey()}.tar`;
    const cached = join(TEST_CACHE_DIR, name);
    if (existsSync(cached)) return bytesAsBlob(await readFile(cached), 'application/x-tar');
    const pg = new PGlite(await pgliteEngine());
    try {
      await migrate(pgliteDatabase(pg));
      await pg.exec(TEMPLATE_SETTINGS);
      for (const statement of TEMPLATE_TRIM) await pg.exec(statement);
      const dump = new Uint8Array(await (await pg.dumpDataDir('none')).arrayBuffer());
      writeCacheFile(name, dump);
      // Templates of earlier migrations (26 MB each) are never used again.
      for (const old of readdirSync(TEST_CACHE_DIR)) {
        if (/^pglite-migrated-[0-9a-f]+\.tar$/.test(old) && old !== name) rmSync(join(TEST_CACHE_DIR, old), { force: true });
      }
      return bytesAsBlob(dump, 'application/x-tar');
    } finally {
      await pg.close();
    }
  })();
  return template;
}

/** A new in-memory PGlite database, migrated (the runner still checks that nothing is pending). */
export async function openTestPglite(): Promise<Database> {
  const [options, loadDataDir] = await Promise.all([pgliteEngine(), migratedTemplate()]);
  const db = await openPglite(undefined, { ...options, loadDataDir });
  const pending = await migrate(db);
  if (pending.length) throw new Error(`the PGlite test template missed migrations: ${pending.join(', ')}`);
  return db;
}
