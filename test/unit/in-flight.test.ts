/**
 * Graceful shutdown waits for handlers whose clients left: app.close() alone resolves while such a
 * handler still runs (a login hashing a password would then meet a closed database pool).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import Fastify from 'fastify';
import { handOffSettled, trackInFlight } from '../../src/http/in-flight.ts';

/** A promise and the function that resolves it. */
function signal(): [Promise<void>, () => void] {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return [promise, resolve];
}

test('drain() resolves only once the handler of an abandoned request has finished', async () => {
  const app = Fastify();
  const inFlight = trackInFlight(app);
  const [gate, release] = signal();
  const [started, entered] = signal();
  const events: string[] = [];
  app.get('/slow', async () => {
    entered();
    await gate;
    events.push('handler finished');
    return { ok: true };
  });
  app.get('/fast', async () => ({ ok: true }));
  await app.listen({ port: 0, host: '127.0.0.1' });
  const port = (app.server.address() as AddressInfo).port;

  // An answered request leaves nothing behind.
  assert.equal((await fetch(`http://127.0.0.1:${port}/fast`)).status, 200);
  assert.equal(await inFlight.drain(10), 0);

  const request = http.get(`http://127.0.0.1:${port}/slow`);
  request.on('error', () => {});
  await started;
  request.destroy(); // the client gives up
  await app.close();
  events.push('app closed');
  const drained = inFlight.drain(30_000).then((left) => events.push(`drained (${left} left)`));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(events, ['app closed'], 'app.close() does not wait for the abandoned handler, drain() does');
  release();
  await drained;
  assert.deepEqual(events, ['app closed', 'handler finished', 'drained (0 left)']);
});

test('drain() gives up after its timeout and says how many handlers are still running', async () => {
  const app = Fastify();
  const inFlight = trackInFlight(app);
  const [started, entered] = signal();
  app.get('/stuck', async () => {
    entered();
    await new Promise(() => {});
  });
  await app.ready();
  void app.inject({ method: 'GET', url: '/stuck' });
  await started;
  assert.equal(await inFlight.drain(20), 1);
});

test('a hijacked request whose client left counts as running until its handler reports it settled', async () => {
  const app = Fastify();
  const inFlight = trackInFlight(app);
  const [gate, release] = signal();
  const [started, entered] = signal();
  // As mount.ts hands the OpenID endpoints to the engine: hijacked, no onSend, no onResponse once the client is gone.
  app.get('/handed-off', async (request, reply) => {
    reply.hijack();
    entered();
    void gate.then(() => handOffSettled(request));
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const port = (app.server.address() as AddressInfo).port;
  const request = http.get(`http://127.0.0.1:${port}/handed-off`);
  request.on('error', () => {});
  await started;
  request.destroy();
  await app.close();
  assert.equal(inFlight.size, 1, 'the handed-off handler is still running after its client left');
  release();
  assert.equal(await inFlight.drain(30_000), 0);
});
