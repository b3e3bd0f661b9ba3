/**
 * OpenID requests whose client gives up mid-request: the engine's endpoints hijack their reply (no
 * onSend runs for them, no onResponse without a finished answer), so a cancelled one used to stay
 * "in flight" for good: memory any anonymous client could pile up, and every graceful shutdown then
 * waited out the whole drain. They must leave the count once the engine is done with them.
 */
import assert from 'node:assert/strict';
import { connect, type AddressInfo } from 'node:net';
import { test } from 'node:test';
import { buildApp } from '../../src/app.ts';
import { trackInFlight } from '../../src/http/in-flight.ts';
import { describeWithApp } from '../helpers/app.ts';

const CUT = 40;

/** Sends a request's headers and the start of its body, and keeps the connection open. */
function startRequest(port: number, path: string, contentType: string, bodyStart: string) {
  const socket = connect(port, '127.0.0.1', () => {
    socket.write(`POST ${path} HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Type: ${contentType}\r\nContent-Length: 1000\r\n\r\n${bodyStart}`);
  });
  socket.on('error', () => {});
  return socket;
}

/** Polls `check` every 20 ms until it holds, for at most `limitMs`. */
async function until(check: () => boolean, limitMs: number): Promise<boolean> {
  for (let waited = 0; waited < limitMs; waited += 20) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return check();
}

describeWithApp('cancelled OpenID requests', (suite) => {
  test('requests cut mid-body at the OpenID endpoints leave the in-flight count, and drain() then finds none', { timeout: 60_000 }, async (t) => {
    const { deps } = await suite.build(t);
    // The app as instance.ts runs it: in-flight tracking added before it is ready, a real socket.
    const app = await buildApp(deps);
    const inFlight = trackInFlight(app);
    t.after(() => app.close());
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    // The engine is built on first use: build it with an answered request first.
    const discovery = await fetch(`http://127.0.0.1:${port}/.well-known/openid-configuration`);
    assert.equal(discovery.status, 200);
    assert.equal(inFlight.size, 0, 'an answered OpenID request leaves nothing behind');

    for (const [path, type, start] of [
      ['/oidc/token', 'application/x-www-form-urlencoded', 'grant_type='],
      ['/oidc/token/introspection', 'application/x-www-form-urlencoded', 'token='],
      ['/oidc/token/revocation', 'application/x-www-form-urlencoded', 'token='],
    ] as const) {
      const sockets = Array.from({ length: CUT }, () => startRequest(port, path, type, start));
      assert.ok(await until(() => inFlight.size === CUT, 15_000), `${path}: all ${CUT} requests reached the app (${inFlight.size})`);
      // Let the engine take them (it waits for the rest of each body), then every client gives up.
      await new Promise((r) => setTimeout(r, 100));
      for (const s of sockets) s.destroy();
      assert.equal(await inFlight.drain(15_000), 0, `${path}: cancelled requests still counted as running`);
    }

    // And a shutdown has nothing left to wait for.
    await app.close();
    assert.equal(await inFlight.drain(15_000), 0);
  });
});
