/**
 * isDatabaseUnavailable over the errors node-postgres really produces: each is made by a real pg
 * Client or Pool against a local socket that behaves as a failing server would (refuses, resets,
 * hangs up, never answers, or answers the startup with a PostgreSQL ErrorResponse), so the test
 * follows the driver's own messages and fields instead of shapes written by hand.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import pg from 'pg';
import { isDatabaseUnavailable } from '../../src/db/unavailable.ts';
import { AppError } from '../../src/errors.ts';

/** A local server doing `onSocket` with each connection; closed when the test ends. */
async function server(t: TestContext, onSocket: (s: net.Socket) => void): Promise<number> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    onSocket(s);
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => srv.close(() => resolve()));
  });
  return (srv.address() as net.AddressInfo).port;
}

/** A backend message: type byte, int32 length (itself included), body. */
function message(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0);
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

/** An ErrorResponse with severity, SQLSTATE and message fields, as the server sends one. */
function errorResponse(severity: string, sqlstate: string, text: string): Buffer {
  const fields = [`S${severity}`, `V${severity}`, `C${sqlstate}`, `M${text}`].map((f) => Buffer.from(`${f}\0`));
  return message('E', Buffer.concat([...fields, Buffer.from('\0')]));
}

/** AuthenticationOk and ReadyForQuery (idle): the end of a successful startup. */
const AUTH_OK = message('R', Buffer.from([0, 0, 0, 0]));
const READY = message('Z', Buffer.from('I'));

/** What connecting a pg Client to 127.0.0.1:`port` (or `host`) rejects with. */
async function connectError(port: number, host = '127.0.0.1'): Promise<Error> {
  const client = new pg.Client({ host, port, user: 'twofold', database: 'twofold', connectionTimeoutMillis: 2000 });
  client.on('error', () => {});
  return client.connect().then(
    async () => {
      await client.end();
      throw new Error('connected');
    },
    (e: Error) => e,
  );
}

/** A server that answers the startup message with `reply` and hangs up. */
function answering(t: TestContext, reply: Buffer): Promise<number> {
  return server(t, (s) => s.once('data', () => s.end(reply)));
}

async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

test('a server refusing or ending the session with a connection SQLSTATE is unavailable', async (t) => {
  const cases: Array<[string, string, string]> = [
    ['FATAL', '57P01', 'terminating connection due to administrator command'],
    ['FATAL', '57P02', 'terminating connection due to crash of another server process'],
    ['FATAL', '57P03', 'the database system is starting up'],
    ['FATAL', '53300', 'sorry, too many clients already'],
    ['FATAL', '08P01', 'invalid frontend message type 0'],
    ['FATAL', '08006', 'connection failure'],
    ['FATAL', '55000', 'database "twofold" is not currently accepting connections'],
  ];
  for (const [severity, sqlstate, text] of cases) {
    const err = await connectError(await answering(t, errorResponse(severity, sqlstate, text)));
    assert.equal((err as { code?: string }).code, sqlstate, 'the driver reports the SQLSTATE');
    assert.equal(err.message, text);
    assert.equal(isDatabaseUnavailable(err), true, `${sqlstate} ${text}`);
  }
});

test('other server errors are not: a query\'s ERROR, even 55000, and a deadlock', async (t) => {
  const cases: Array<[string, string, string]> = [
    ['ERROR', '55000', 'currval of sequence "x" is not yet defined in this session'],
    // A wrong number of bind parameters: class 08, but an ERROR of the query on a working connection.
    ['ERROR', '08P01', 'bind message supplies 1 parameters, but prepared statement "" requires 2'],
    ['ERROR', '23505', 'duplicate key value violates unique constraint "users_pkey"'],
    ['ERROR', '40P01', 'deadlock detected'],
    ['FATAL', '28P01', 'password authentication failed for user "twofold"'],
  ];
  for (const [severity, sqlstate, text] of cases) {
    const err = await connectError(await answering(t, errorResponse(severity, sqlstate, text)));
    assert.equal((err as { code?: string }).code, sqlstate);
    assert.equal(isDatabaseUnavailable(err), false, `${severity} ${sqlstate}`);
  }
});

test('socket failures of the connection are unavailable: refused, reset, hung up, unknown host', async (t) => {
  const refused = await connectError(await closedPort());
  assert.equal((refused as { code?: string }).code, 'ECONNREFUSED');
  assert.equal(isDatabaseUnavailable(refused), true);

  const reset = await connectError(await server(t, (s) => s.resetAndDestroy()));
  assert.equal((reset as { code?: string }).code, 'ECONNRESET');
  assert.equal(isDatabaseUnavailable(reset), true);

  const hungUp = await connectError(await server(t, (s) => s.end()));
  assert.equal(hungUp.message, 'Connection terminated unexpectedly');
  assert.equal(isDatabaseUnavailable(hungUp), true);

  // `.invalid` never resolves (RFC 6761); offline, the resolver may say EAI_AGAIN instead.
  const unknown = await connectError(5432, 'twofold-test.invalid');
  assert.ok(['ENOTFOUND', 'EAI_AGAIN'].includes((unknown as { code?: string }).code ?? ''), unknown.message);
  assert.equal(isDatabaseUnavailable(unknown), true);
});

test('the pool\'s connection timeout, both its messages, is unavailable', async (t) => {
  // A server that accepts and never answers: connecting outlasts connectionTimeoutMillis.
  const silent = new pg.Pool({ host: '127.0.0.1', port: await server(t, () => {}), user: 'twofold', max: 1, connectionTimeoutMillis: 50 });
  t.after(() => silent.end());
  const connecting = await silent.query('SELECT 1').then(() => undefined, (e: Error) => e);
  assert.equal(connecting?.message, 'Connection terminated due to connection timeout');
  assert.equal(isDatabaseUnavailable(connecting), true);

  // A pool whose only connection is checked out: the next caller times out waiting for a slot.
  const port = await server(t, (s) => s.once('data', () => s.write(Buffer.concat([AUTH_OK, READY]))));
  const full = new pg.Pool({ host: '127.0.0.1', port, user: 'twofold', max: 1, connectionTimeoutMillis: 50 });
  const held = await full.connect();
  t.after(async () => {
    held.release(true);
    await full.end();
  });
  const waiting = await full.connect().then(() => undefined, (e: Error) => e);
  assert.equal(waiting?.message, 'timeout exceeded when trying to connect');
  assert.equal(isDatabaseUnavailable(waiting), true);
});

test('a client whose connection failed refuses queries: unavailable; a client closed by us is not', async (t) => {
  // Completes the startup, then resets the connection at the first query.
  const port = await server(t, (s) => {
    s.once('data', () => {
      s.write(Buffer.concat([AUTH_OK, READY]));
      s.once('data', () => s.resetAndDestroy());
    });
  });
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'twofold' });
  const emitted: Error[] = [];
  client.on('error', (e) => emitted.push(e));
  await client.connect();
  const first = await client.query('SELECT 1').then(() => undefined, (e: Error) => e);
  assert.equal(isDatabaseUnavailable(first), true, first?.message);
  assert.ok(emitted.length > 0, 'the client reported the broken connection');
  for (const e of emitted) assert.equal(isDatabaseUnavailable(e), true, e.message);
  const next = await client.query('SELECT 1').then(() => undefined, (e: Error) => e);
  assert.equal(next?.message, 'Client has encountered a connection error and is not queryable');
  assert.equal(isDatabaseUnavailable(next), true);

  const closed = new pg.Client({ host: '127.0.0.1', port: await server(t, (s) => s.once('data', () => s.write(Buffer.concat([AUTH_OK, READY])))), user: 'twofold' });
  await closed.connect();
  await closed.end();
  const afterEnd = await closed.query('SELECT 1').then(() => undefined, (e: Error) => e);
  assert.ok(afterEnd, 'the closed client refuses');
  assert.equal(isDatabaseUnavailable(afterEnd), false, afterEnd.message);
});

test('errors that are not the database\'s keep their 500', async () => {
  assert.equal(isDatabaseUnavailable(new Error('connection lost (test)')), false);
  assert.equal(isDatabaseUnavailable(new AppError('internal_error')), false);
  assert.equal(isDatabaseUnavailable(undefined), false);
  assert.equal(isDatabaseUnavailable({ code: '57P01', severity: 'FATAL', message: 'not an Error' }), false);
  // An HTTP client's failure carries the socket's code in its cause, not its own: not the database.
  const fetchFailure = await fetch(`http://127.0.0.1:${await closedPort()}/`).then(() => undefined, (e: Error) => e);
  assert.ok(fetchFailure);
  assert.equal(isDatabaseUnavailable(fetchFailure), false);
});
