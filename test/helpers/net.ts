/** Network helpers for tests and the benchmark. */
import { readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';

/**
 * The lowest port of the kernel's ephemeral range (32768 unless the host says otherwise). Every
 * `listen(0)` and every outgoing connection takes its port from that range.
 */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 0 ? low : 32768;
  } catch {
    return 32768;
  }
}

function bindable(port: number): Promise<boolean> {
  const s = createServer();
  s.unref();
  return new Promise((resolve) => {
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/**
 * A loopback port nothing listens on right now, for a child process to bind a moment later.
 *
 * It is drawn at random from below the ephemeral range, not asked of the OS with `listen(0)`: a port
 * the OS hands out and we release goes back to the ephemeral pool, where a concurrent test file's
 * `app.listen({ port: 0 })` could take it before the child binds it; the child's health check would
 * then be answered by that other server (CI saw exactly this once). Ports below the range are never
 * handed out by the OS, so only another `freePort` caller could pick the same one, one chance in
 * thousands, and the child would then fail to start with a clear EADDRINUSE instead.
 */
export async function freePort(): Promise<number> {
  const high = ephemeralLow() - 1;
  const low = Math.max(10_000, high - 20_000);
  if (high - low < 1000) return osPort();
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = low + Math.floor(Math.random() * (high - low + 1));
    if (await bindable(port)) return port;
  }
  return osPort();
}

async function osPort(): Promise<number> {
  const s = createServer();
  s.unref();
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => resolve());
  });
  const address = s.address();
  await new Promise<void>((resolve) => s.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/**
 * Sends raw bytes and returns everything the server writes before it closes the connection (or
 * before the client gives up after 10 idle seconds and closes it itself).
 */
export function rawExchange(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(request));
    socket.setTimeout(10_000, () => socket.destroy());
    let answer = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (answer += d));
    socket.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? resolve(answer) : reject(e)));
    socket.on('close', () => resolve(answer));
  });
}
