/**
 * The real service as a child process (`npm start`), for end-to-end tests: started in its own process
 * group (npm, the shell and node die together), waited for until /healthz answers, and killed with
 * every other started child when the test file ends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { after, type TestContext } from 'node:test';
import { ROOT } from './root.ts';

const children: ChildProcess[] = [];
let cleanupRegistered = false;

/** Signals the child's whole process group and waits for it to exit. */
export function stopService(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    // npm start runs a process tree; it is its own process group, so signal the group.
    try {
      process.kill(-child.pid!, signal);
    } catch {
      resolve();
    }
  });
}

/** Socket inodes listening on a TCP port (IPv4 and IPv6), from the kernel's tables. */
function listeningInodes(port: number): Set<string> {
  const inodes = new Set<string>();
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // f[1] local address:port, f[3] state (0A = LISTEN), f[9] inode
      if (f.length > 9 && f[3] === '0A' && f[1]!.endsWith(`:${hexPort}`)) inodes.add(f[9]!);
    }
  }
  return inodes;
}

/** Whether a process of process group `pgid` (npm, its shell, node) holds the socket listening on `port`. */
function listenedOnByGroup(pgid: number, port: number): boolean {
  // Without Linux's /proc there is nothing to look at: the answer itself has to do.
  if (!existsSync('/proc/net/tcp')) return true;
  const inodes = listeningInodes(port);
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      // The fifth field of stat is the process group; the command name before it may hold spaces.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]) !== pgid) continue;
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m && inodes.has(m[1]!)) return true;
      }
    } catch {
      // the process ended while we looked
    }
  }
  return false;
}

/**
 * `npm start` with `env` (PORT required); resolves once /healthz answers. With `t`, the service is
 * killed when that test ends. Without, when the test file ends: at the end of the first file of its
 * process that started one, so a process that runs several files (npm test's chunks) must pass `t`.
 * (Two files in one chunk left the second's services running, and their pipes kept the process
 * from ever ending.)
 */
export async function startService(env: Record<string, string>, t?: TestContext): Promise<{ child: ChildProcess; output: () => string }> {
  if (!t && !cleanupRegistered) {
    cleanupRegistered = true;
    after(async () => {
      await Promise.all(children.map((c) => stopService(c, 'SIGKILL')));
    });
  }
  const child = spawn('npm', ['start', '--silent'], { cwd: ROOT, env: { ...process.env, ...env }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  if (t) t.after(() => stopService(child, 'SIGKILL'));
  else children.push(child);
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const base = `http://127.0.0.1:${env.PORT}`;
  // Bounded wait for start-up: 60 s covers a cold tsx compile plus PGlite initialisation on 2 cores.
  for (let i = 0; i < 240; i++) {
    if (child.exitCode !== null) throw new Error(`npm start exited early:\n${output}`);
    try {
      const res = await fetch(`${base}/healthz`);
      // Only our child's answer counts: another test's server on the same port would answer too.
      if (res.ok && listenedOnByGroup(child.pid!, Number(env.PORT))) return { child, output: () => output };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`npm start did not answer /healthz:\n${output}`);
}
