/**
 * Webhook connections are kept alive; a kept socket the receiver drops as it is reused must not turn
 * a healthy receiver into a failed delivery (it is retried once, on a fresh connection).
 */
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { sendWebhook, signersFor } from '../../src/webhooks/send.ts';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const OK = 'HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\nKeep-Alive: timeout=30\r\n\r\n';

/** A raw HTTP receiver: answers the first request of each connection, and `onSecond` decides the rest. */
async function receiver(onSecond: 'reset' | 'answer') {
  const connections: Socket[] = [];
  const requests: number[] = [];
  const server = createServer((socket) => {
    const index = connections.push(socket) - 1;
    let seen = 0;
    socket.on('data', (chunk) => {
      // One small request per chunk here (loopback, short bodies).
      if (!chunk.toString('latin1').startsWith('POST ')) return;
      seen++;
      requests.push(index);
      if (seen === 1 || onSecond === 'answer') socket.write(OK);
      else socket.resetAndDestroy();
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, connections, requests, close: () => new Promise<void>((r) => server.close(() => r())) };
}

const send = (url: string, id: string) => sendWebhook({ url, id, timestamp: new Date(), body: '{}', signers: signersFor([SECRET]) }, { timeoutMs: 5000, allowPrivate: true });

test('deliveries reuse one kept-alive connection', async () => {
  const r = await receiver('answer');
  try {
    for (const id of ['msg_a1', 'msg_a2', 'msg_a3']) assert.deepEqual(await send(r.url, id), { ok: true, statusCode: 204 });
    assert.equal(r.connections.length, 1, 'one connection for three deliveries');
  } finally {
    r.connections.forEach((s) => s.destroy());
    await r.close();
  }
});

test('a kept socket reset as it is reused: sent again once on a fresh connection', async () => {
  const r = await receiver('reset');
  try {
    assert.deepEqual(await send(r.url, 'msg_b1'), { ok: true, statusCode: 204 });
    // The second request goes out on the kept socket, which the receiver resets; the retry opens a new one.
    assert.deepEqual(await send(r.url, 'msg_b2'), { ok: true, statusCode: 204 });
    assert.deepEqual(r.requests, [0, 0, 1]);
    assert.equal(r.connections.length, 2);
  } finally {
    r.connections.forEach((s) => s.destroy());
    await r.close();
  }
});
