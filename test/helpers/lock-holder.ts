/**
 * A process that holds a data directory's lock (argv[2]) until its standard input ends, then releases
 * it: another server or container as data-dir-lock.ts sees one (test/e2e/data-dir-lock-namespaces.test.ts
 * runs this file; importing it does nothing else).
 */
import { lockDataDir } from '../../src/db/data-dir-lock.ts';

const dataDir = process.argv[2];
if (dataDir) {
  const release = lockDataDir(dataDir);
  process.stdout.write(`locked ${process.pid}\n`);
  process.stdin.resume();
  process.stdin.on('end', () => {
    release();
    process.exit(0);
  });
}
