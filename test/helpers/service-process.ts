/**
 * The real service as a child process (`npm start`), for end-to-end tests: started in its own process
 * group (npm, the shell and node die together), waited for until /healthz answers, and killed with
 * every other started child when the test file ends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { after } from 'node:test';
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

/** `npm start` with `env` (PORT required); resolves once /healthz answers. */
export async function startService(env: Record<string, string>): Promise<{ child: ChildProcess; output: () => string }> {
  if (!cleanupRegistered) {
    cleanupRegistered = true;
    after(async () => {
      await Promise.all(children.map((c) => stopService(c, 'SIGKILL')));
    });
  }
  const child = spawn('npm', ['start', '--silent'], { cwd: ROOT, env: { ...process.env, ...env }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const base = `http://127.0.0.1:${env.PORT}`;
  // Bounded wait for start-up: 60 s covers a cold tsx compile plus PGlite initialisation on 2 cores.
  for (let i = 0; i < 240; i++) {
    if (child.exitCode !== null) throw new Error(`npm start exited early:\n${output}`);
    try {
      const res = await fetch(`${base}/healthz`);
      if (res.ok) return { child, output: () => output };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`npm start did not answer /healthz:\n${output}`);
}
