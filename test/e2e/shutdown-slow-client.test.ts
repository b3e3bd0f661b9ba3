/**
 * A graceful shutdown is bounded even by a client that trickles its request: once the server stops
 * taking connections Node no longer enforces REQUEST_TIMEOUT, and the shutdown used to wait for such a
 * client for as long as it kept sending (minutes in the review's run). The real process, a real socket.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { freePort } from '../helpers/net.ts';
import { startService, stopService } from '../helpers/service-process.ts';

/** Far more than REQUEST_TIMEOUT plus the drain: a shutdown still running then is held open. */
const EXIT_BOUND_MS = 60_000;

test('SIGTERM while a client trickles its request body: the service closes that connection and exits', { timeout: 180_000 }, async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'twofold-e2e-'));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const port = await freePort();
  const env = { PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'info', NODE_ENV: 'development', DATABASE_URL: '', SMTP_URL: '', REDIS_URL: '', METRICS_PORT: '', REQUEST_TIMEOUT: '3' };
  const { child, output } = await startService(env, t);
  // npm's process ends on the signal by itself; the server (its grandchild) holds the output pipes
  // until it exits, so their closing is the server's exit.
  const serverGone = new Promise<void>((resolve) => child.once('close', () => resolve()));

  // Headers and the start of a 1,000-byte body, then one more byte every 200 ms: the request is never
  // complete, and the client never idle.
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  socket.write('POST /api/v1/auth-jwt/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{');
  const drip = setInterval(() => {
    if (socket.writable) socket.write(' ');
  }, 200);
  t.after(() => {
    clearInterval(drip);
    socket.destroy();
  });
  // The request under way before the signal (the server answers nothing until its body is complete).
  await new Promise((r) => setTimeout(r, 300));

  let bound: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    Promise.all([stopService(child, 'SIGTERM'), serverGone, closed]).then(() => 'exited'),
    new Promise<string>((resolve) => (bound = setTimeout(() => resolve('still running'), EXIT_BOUND_MS))),
  ]);
  clearTimeout(bound);
  assert.equal(outcome, 'exited', `the service did not finish its shutdown within ${EXIT_BOUND_MS} ms:\n${output()}`);
  assert.match(output(), /"msg":"shutting down"/);
  assert.doesNotMatch(output(), /"level":50/, 'nothing failed on the way out');
  assert.match(output(), /closing connections still open after REQUEST_TIMEOUT of shutting down/);
});
