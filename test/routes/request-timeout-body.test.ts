/**
 * REQUEST_TIMEOUT covers the body too (README: "the time a client has to send a whole request"):
 * a client whose headers arrived but who trickles its body a byte at a time gets 408 and its
 * connection closed once the limit is up, not after Node's own 60 s headers timeout.
 */
import assert from 'node:assert/strict';
import { connect, type AddressInfo } from 'node:net';
import { test } from 'node:test';
import { buildApp } from '../../src/app.ts';
import { trackInFlight } from '../../src/http/in-flight.ts';
import { describeWithApp } from '../helpers/app.ts';

/** Far below Node's 60 s default: a cut only after that means REQUEST_TIMEOUT did not apply. */
const CLIENT_GIVES_UP_MS = 20_000;

/**
 * Sends the headers of a POST with a 1,000-byte body, then one byte of it every 200 ms, and returns
 * what the server wrote before closing the connection; `null` if the client had to give up first.
 */
function trickleBody(port: number, path: string, contentType: string): Promise<string | null> {
  return new Promise((resolve) => {
    let answer = '';
    let gaveUp = false;
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(`POST ${path} HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Type: ${contentType}\r\nContent-Length: 1000\r\n\r\n{`);
    });
    const drip = setInterval(() => {
      if (socket.writable) socket.write(' ');
    }, 200);
    const giveUp = setTimeout(() => {
      gaveUp = true;
      socket.destroy();
    }, CLIENT_GIVES_UP_MS);
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (answer += d));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearInterval(drip);
      clearTimeout(giveUp);
      resolve(gaveUp ? null : answer);
    });
  });
}

describeWithApp('request timeout on bodies', (suite) => {
  test('a body trickled past REQUEST_TIMEOUT gets 408 malformed_request and the connection is closed', { timeout: 60_000 }, async (t) => {
    const { deps } = await suite.build(t, { env: { REQUEST_TIMEOUT: '1' } });
    // As instance.ts runs it: in-flight tracking added before the app is ready.
    const app = await buildApp(deps);
    const inFlight = trackInFlight(app);
    t.after(() => app.close());
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    const answers = await Promise.all([
      trickleBody(port, '/api/v1/auth-jwt/login', 'application/json'),
      trickleBody(port, '/api/v1/user', 'application/json'),
      trickleBody(port, '/oidc/token', 'application/x-www-form-urlencoded'),
    ]);
    for (const [i, answer] of answers.entries()) {
      assert.notEqual(answer, null, `request ${i}: still open after ${CLIENT_GIVES_UP_MS} ms with REQUEST_TIMEOUT=1`);
      const [head = '', body = ''] = answer!.split('\r\n\r\n');
      assert.match(head, /^HTTP\/1\.1 408 /, answer!);
      assert.match(head, /content-type: application\/problem\+json/i);
      assert.match(head, /cache-control: no-store/i);
      const problem = JSON.parse(body) as { status: number; code: string };
      assert.equal(problem.status, 408);
      assert.equal(problem.code, 'malformed_request');
    }
    // And the requests cut so are not left counted as running (a shutdown would wait for them).
    assert.equal(await inFlight.drain(15_000), 0);
  });
});
