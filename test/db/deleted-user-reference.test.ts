/**
 * isDeletedUserReference recognises what both engines report for a row naming a user that is gone
 * (the error handler answers it 401 invalid_token instead of 500), and nothing else.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { isDeletedUserReference } from '../../src/db/deleted-user.ts';
import { withDatabases } from '../helpers/pg-database.ts';

withDatabases('a foreign key to a deleted user', ({ open }) => {
  test('a row naming a missing user is recognised; other failures are not', async () => {
    const { db } = await open();
    const missingUser = await db.query('INSERT INTO totp_factors (user_id, pending_secret, pending_created_at, updated_at) VALUES ($1, $2, now(), now())', [randomUUID(), 'x']).catch((e: unknown) => e);
    assert.ok(isDeletedUserReference(missingUser), String(missingUser));
    // A foreign key to another table (a delivery of an event that does not exist) is not the user's.
    const missingEvent = await db.query(`INSERT INTO event_deliveries (event_id, target, seq, created_at, age_from, next_attempt_at) VALUES ($1, 'amqp', 1, now(), now(), now())`, [randomUUID()]).catch((e: unknown) => e);
    assert.equal((missingEvent as { code?: string }).code, '23503', String(missingEvent));
    assert.equal(isDeletedUserReference(missingEvent), false);
    const notNull = await db.query('INSERT INTO users (id) VALUES ($1)', [randomUUID()]).catch((e: unknown) => e);
    assert.equal((notNull as { code?: string }).code, '23502', String(notNull));
    assert.equal(isDeletedUserReference(notNull), false);
    assert.equal(isDeletedUserReference(new Error('is not present in table "users".')), false);
  });
});
