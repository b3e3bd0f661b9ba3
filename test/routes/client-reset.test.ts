/**
 * A client that resets its connection right after sending a request: the socket is gone by the time
 * the handler runs, and Node can no longer ask it for the peer address. Sign-up, forgot-password and
 * resend-verification count the client's address; they used to throw on the missing address (a 500
 * and an error with its stack in the log, for something any client can do at will).
 */
import assert from 'node:assert/strict';
import { connect, type AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import pino from 'pino';
import { buildApp } from '../../src/app.ts';
import { findUserByUsername } from '../../src/db/repositories/users.ts';
import { createUser, describeWithApp, PASSWORD, uniqueName } from '../helpers/app.ts';

/** Polls `check` every 20 ms until it holds, for at most `limitMs`. */
async function until(check: () => boolean, limitMs: number): Promise<boolean> {
  for (let waited = 0; waited < limitMs; waited += 20) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return check();
}

describeWithApp('clients resetting their connection', (suite) => {
  test('sign-up, forgot-password and resend-verification followed by a reset log no error', { timeout: 60_000 }, async (t) => {
    const lines: Array<{ level: number; msg: string; err?: { message?: string } }> = [];
    const logger = pino({ level: 'warn' }, new Writable({
      write(chunk: Buffer, _encoding, callback) {
        lines.push(JSON.parse(String(chunk)) as (typeof lines)[number]);
        callback();
      },
    }));
    const { app: helperApp, deps } = await suite.build(t, { logger });
    const unverified = await createUser(helperApp);

    // The app on a real socket, with a test hook that holds each handler back until the server has
    // seen its client's reset: the handler then runs exactly in the situation a reset causes.
    const app = await buildApp(deps);
    const reached = new Map<string, () => void>();
    const answered: string[] = [];
    app.addHook('preHandler', async (request) => {
      const socket = request.raw.socket;
      reached.get(request.url)?.();
      // Not events.once: it rejects on the socket's 'error' (ECONNRESET), which is not the point here.
      if (!socket.destroyed) await new Promise((resolve) => socket.once('close', resolve));
    });
    app.addHook('onSend', async (request) => {
      answered.push(request.url);
    });
    t.after(() => app.close());
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;

    const name = uniqueName('resetter');
    const requests: Array<[string, unknown]> = [
      ['/api/v1/user', { username: name, email: `${name}@example.com`, password1: PASSWORD, password2: PASSWORD }],
      ['/api/v1/user/password/forgot', { email: unverified.email }],
      ['/api/v1/user/password/forgot', { email: 'nobody-here@example.com' }],
      ['/api/v1/user/email/verify/resend', { email: unverified.email }],
    ];
    for (const [path, body] of requests) {
      const payload = JSON.stringify(body);
      const inHandler = new Promise<void>((resolve) => reached.set(path, resolve));
      const socket = connect(port, '127.0.0.1', () => {
        socket.write(`POST ${path} HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(payload)}\r\n\r\n${payload}`);
      });
      socket.on('error', () => {});
      await inHandler;
      socket.resetAndDestroy();
      const before = answered.length;
      assert.ok(await until(() => answered.length > before, 15_000), `${path}: the handler finished`);
    }

    const errors = lines.filter((l) => l.level >= 50);
    assert.deepEqual(errors.map((l) => `${l.msg}: ${l.err?.message ?? ''}`), [], 'no error-level log for a client that reset its connection');
    const user = await findUserByUsername(deps.db, name);
    assert.ok(user, 'the sign-up went through');
    // Its address was known all along (taken when the connection was accepted), not lost with the socket.
    assert.equal(user.signup_ip, '127.0.0.1');
  });
});
