/** The SSRF guard's address rules (issue 10): only public unicast addresses are webhook targets. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { guardedLookup, isPublicAddress, refuseHost, refuseResolvedHost } from '../../src/webhooks/ssrf.ts';

test('private, loopback, link-local and reserved addresses are not public, in every spelling', () => {
  for (const a of [
    '127.0.0.1', '127.8.9.10', '10.0.0.1', '172.16.5.4', '172.31.255.255', '192.168.1.1', '169.254.169.254', '0.0.0.0',
    '100.64.0.1', '224.0.0.1', '255.255.255.255', '::1', '::', 'fe80::1', 'fc00::1', 'fd12:3456::1', 'ff02::1',
    '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:169.254.169.254', '64:ff9b::a9fe:a9fe', '2002:7f00:1::', '::127.0.0.1', '[::1]', 'fe80::1%eth0',
    // SIIT's IPv4-translated form, and local-use NAT64 (a translator on the operator's network).
    '::ffff:0:10.0.0.1', '::ffff:0:a9fe:a9fe', '64:ff9b:1::a00:1', '64:ff9b:1:ffff::808:808',
    // Teredo: a relay towards an obfuscated IPv4 address (here 10.0.0.1 behind server 65.54.227.120).
    '2001:0:4136:e378:8000:63bf:f5ff:fffe',
  ]) {
    assert.equal(isPublicAddress(a), false, a);
  }
  for (const a of ['8.8.8.8', '93.184.216.34', '172.32.0.1', '2606:4700:4700::1111', '2001:4860:4860::8888', '::ffff:8.8.8.8', '2002:808:808::', '::ffff:0:8.8.8.8', '64:ff9b::808:808']) {
    assert.equal(isPublicAddress(a), true, a);
  }
});

test('refuseHost: IP literals and local names are refused unless private targets are allowed', () => {
  assert.match(refuseHost('127.0.0.1', false)!, /private/);
  assert.match(refuseHost('[::ffff:10.0.0.1]', false)!, /private/);
  assert.match(refuseHost('localhost', false)!, /local name/);
  assert.match(refuseHost('api.localhost', false)!, /local name/);
  assert.match(refuseHost('printer', false)!, /local name/);
  assert.match(refuseHost('metadata.google.internal', false)!, /local name/);
  assert.equal(refuseHost('hooks.example.com', false), undefined);
  assert.equal(refuseHost('8.8.8.8', false), undefined);
  assert.equal(refuseHost('127.0.0.1', true), undefined);
});

test('guardedLookup refuses a name whose DNS answer is loopback, and passes it through when allowed', async () => {
  const refused = await new Promise<Error | null>((resolve) => guardedLookup(false)('localhost', {}, (err) => resolve(err)));
  assert.ok(refused);
  assert.equal((refused as Error & { code?: string }).code, 'EFORBIDDENTARGET');
  const allowed = await new Promise<{ err: Error | null; address: unknown }>((resolve) => guardedLookup(true)('localhost', { all: true }, (err, address) => resolve({ err, address })));
  assert.equal(allowed.err, null);
  assert.ok(Array.isArray(allowed.address) && allowed.address.length > 0);
});

test('registration does not wait on a resolver that never answers; an answer in time still refuses a private address', { timeout: 5000 }, async () => {
  const silent = () => undefined;
  assert.equal(await refuseResolvedHost('hooks.example.com', false, silent, 20), undefined, 'passes on to the delivery-time check');
  const privateAnswer = (_h: string, _o: unknown, cb: (err: null, a: Array<{ address: string; family: number }>) => void) => cb(null, [{ address: '10.0.0.5', family: 4 }]);
  assert.match(await refuseResolvedHost('hooks.example.com', false, privateAnswer, 20) ?? '', /10\.0\.0\.5/);
});

test('lookups of a name already being looked up share its answer: a hanging name holds one thread of the pool, other names are not held up', async () => {
  const started: Array<{ host: string; cb: (err: null, a: Array<{ address: string; family: number }>) => void }> = [];
  const resolver = (host: string, _o: unknown, cb: (err: null, a: Array<{ address: string; family: number }>) => void) => void started.push({ host, cb });
  const answers: string[] = [];
  const lookup = guardedLookup(false, resolver as never);
  for (let i = 0; i < 5; i++) lookup('hangs.example.com', { all: true }, (err) => answers.push(err ? `refused${i}` : `hangs${i}`));
  lookup('healthy.example.com', { all: true }, (err) => answers.push(err ? 'refused' : 'healthy'));
  assert.deepEqual(started.map((s) => s.host), ['hangs.example.com', 'healthy.example.com'], 'one lookup for the five deliveries to the hanging name; the other name at once');
  started[1]!.cb(null, [{ address: '93.184.216.34', family: 4 }]);
  assert.deepEqual(answers, ['healthy']);
  // Registration is not held up by the hanging name either: a private answer for another name is refused in time.
  const privateAnswer = (_h: string, _o: unknown, cb: (err: null, a: Array<{ address: string; family: number }>) => void) => cb(null, [{ address: '10.0.0.5', family: 4 }]);
  assert.match(await refuseResolvedHost('internal.example.com', false, privateAnswer, 20) ?? '', /10\.0\.0\.5/);
  started[0]!.cb(null, [{ address: '10.0.0.9', family: 4 }]);
  assert.deepEqual(answers.slice(1), ['refused0', 'refused1', 'refused2', 'refused3', 'refused4'], 'every waiting delivery gets the answer, and its check');
  lookup('hangs.example.com', { all: true }, () => answers.push('again'));
  assert.equal(started.length, 3, 'once answered, the next lookup of the name is a new one');
});
