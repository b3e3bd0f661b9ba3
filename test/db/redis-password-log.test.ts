/**
 * The Redis password never reaches the log. A Redis that refuses the configured password (mistyped,
 * or stale after a rotation) fails the client's `HELLO 3 AUTH default <password>`, and ioredis attaches
 * that command, arguments included, to the error the limiter logged at warn. Runs a Redis of its own
 * with a password (the machine's has none), where the Redis tests run: with REDIS_URL set.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createLogger } from '../../src/logger.ts';
import { createRedisClient } from '../../src/security/limiter-redis.ts';
import { freePort } from '../helpers/net.ts';

if (process.env.REDIS_URL) {
  test('a refused Redis password is not written to the log', async (t) => {
    const port = await freePort();
    const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--requirepass', 'the-right-Passw0rd-123', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'inherit'] });
    t.after(() => server.kill('SIGKILL'));
    await new Promise<void>((resolve, reject) => {
      server.once('exit', (code) => reject(new Error(`redis-server exited with ${code}`)));
      server.stdout!.on('data', (d: Buffer) => {
        if (d.toString().includes('Ready to accept connections')) resolve();
      });
    });
    const lines: string[] = [];
    const dest = new Writable({ write(chunk: Buffer, _enc, cb) { lines.push(String(chunk)); cb(); } });
    const stale = 'stale-Passw0rd-after-rotation';
    const client = createRedisClient(`redis://:${stale}@127.0.0.1:${port}`, createLogger({ logLevel: 'info' }, dest));
    t.after(() => client.disconnect());
    // Polls until the outage is logged; the test's timeout bounds it.
    while (!lines.some((l) => l.includes('Redis unreachable'))) await new Promise((r) => setTimeout(r, 20));
    const logged = lines.join('');
    assert.ok(!logged.includes(stale), logged);
    assert.match(logged, /WRONGPASS|invalid username-password/i, 'the reason is still there');
  });
}
