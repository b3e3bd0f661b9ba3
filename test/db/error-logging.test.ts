/** Issue 7: a failed query's bound values (password hashes, codes, addresses) never reach the logs. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createLogger } from '../../src/logger.ts';
import { databaseKinds } from '../helpers/app.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/pg-database.ts';

const HASH = '$argon2id$v=19$m=19456,t=2,p=1$c2VjcmV0LXNhbHQ$secret-hash-value';

function capture() {
  const lines: string[] = [];
  return { lines, logger: createLogger({ logLevel: 'info' }, { write: (s: string) => void lines.push(s) }) };
}

for (const kind of databaseKinds()) {
  describe(`error logging [${kind}]`, () => {
    let database: TestDatabase | undefined;
    before(async () => {
      database = await createTestDatabase(kind);
    });
    after(async () => {
      await database?.cleanup();
    });

    test('a database error is logged with its message but without the parameters of its query, in the error and in a cause', async () => {
      const failure = await database!.db.query('SELECT $1::int AS n', [HASH]).then(() => undefined, (e: unknown) => e as Error);
      assert.ok(failure, 'the query fails');
      const { lines, logger } = capture();
      logger.error({ err: failure }, 'unhandled error');
      logger.error({ err: new Error('request failed', { cause: failure }) }, 'wrapped');
      const text = lines.join('\n');
      assert.ok(!text.includes('secret-hash-value'), text);
      assert.match(lines[0]!, /invalid input syntax for type integer/, 'the message itself is kept');
      // The SQLSTATE survives the redaction of `*.code` (22P02: invalid text representation).
      assert.equal(JSON.parse(lines[0]!).err.errorCode, '22P02');
    });
  });
}

test('request URLs are logged without their query string (links carry tokens there)', () => {
  const { lines, logger } = capture();
  logger.info({ req: { method: 'GET', url: '/api/v1/user/email/verify?token=tok-secret-123', headers: {} } }, 'request');
  assert.ok(!lines.join('').includes('tok-secret-123'));
  assert.match(lines[0]!, /"url":"\/api\/v1\/user\/email\/verify"/);
});

test('system error codes stay readable in error logs; a one-time code in a logged object is still redacted', () => {
  const { lines, logger } = capture();
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' });
  logger.error({ err: refused }, 'outage');
  logger.error({ err: Object.assign(new Error('a code'), { code: '123456' }) }, 'digits are never kept');
  logger.warn({ body: { code: '654321' } }, 'a body');
  const [outage, digits, body] = lines.map((l) => JSON.parse(l) as Record<string, Record<string, unknown>>);
  assert.equal(body!.body!.code, '[redacted]');
  assert.equal(outage!.err!.errorCode, 'ECONNREFUSED');
  assert.equal(digits!.err!.errorCode, undefined);
  assert.ok(!lines.join('').includes('123456') && !lines.join('').includes('654321'), lines.join('\n'));
});
