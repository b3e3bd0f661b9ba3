/** Network helpers for tests and the benchmark. */
import { createServer, type AddressInfo } from 'node:net';

/** A loopback port nothing listens on right now (asked of the OS, then released). */
export async function freePort(): Promise<number> {
  const s = createServer();
  s.unref();
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}
