/** The mail outbox's error text keeps no address (db/repositories/outbox.ts maskAddresses) and keeps the rest. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { maskAddresses } from '../../src/db/repositories/outbox.ts';

test('addresses in an SMTP error become <address>; codes and reasons stay', () => {
  const cases: Array<[string, string]> = [
    ["Can't send mail - all recipients were rejected: 550 5.1.1 <user@example.com>: Recipient address rejected", "Can't send mail - all recipients were rejected: 550 5.1.1 <address>: Recipient address rejected"],
    ['550 Recipient first.last+tag@example.com unknown', '550 Recipient <address> unknown'],
    ['553 "john doe"@example.com: bad mailbox', '553 <address>: bad mailbox'],
    ["550 o'brien@example.com (jörg@bücher.example), <@relay.example:u@example.com>", '550 <address> (<address>), <address>'],
    ['connect ECONNREFUSED 127.0.0.1:2525', 'connect ECONNREFUSED 127.0.0.1:2525'],
    ['EAUTH: Invalid login: 535 5.7.8 Error: authentication failed', 'EAUTH: Invalid login: 535 5.7.8 Error: authentication failed'],
  ];
  for (const [input, expected] of cases) assert.equal(maskAddresses(input), expected);
});
