/**
 * `npm run bench`: throughput and latency of the main flows against a running instance, next to the
 * raw argon2id verify rate measured in the same run (login is bound by the password hash).
 *
 * By default it builds and starts its own instance the production way (`npm run build`, `node dist/server.js`)
 * with RATE_LIMIT_DISABLED=true
 * on a fresh database `twofold_bench_<random>` of the PostgreSQL server at BENCH_DATABASE_URL (default
 * postgres://postgres@127.0.0.1:5432/postgres; PGlite when unreachable), and reports its peak resident
 * memory (VmHWM). BENCH_URL=http://host:port targets an instance you started yourself instead (it must
 * run with RATE_LIMIT_DISABLED=true). BENCH_DURATION (seconds, default 10) bounds each timed run.
 * The load comes from a child process (bench/load-generator.ts): instance, driver and load generator
 * are three processes. BENCH_FLOWS (comma-separated: user-info, refresh, password, totp, passkey,
 * events) runs only some rows, for measuring one change quickly.
 */
import { execSync, fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hash, verify } from '@node-rs/argon2';
import pg from 'pg';
import { freePort } from '../test/helpers/net.ts';
import { codeFor, currentStep, type ExportedPasskey, type LoadJob, type LoadResult } from './load-generator.ts';
import { SoftwareAuthenticator } from '../test/helpers/webauthn.ts';

const DURATION = Number(process.env.BENCH_DURATION ?? 10);
/** BENCH_FLOWS=user-info,refresh,password,totp,passkey,events runs only those rows (default: all). */
const FLOWS = new Set((process.env.BENCH_FLOWS ?? 'user-info,refresh,password,totp,passkey,events').split(',').map((f) => f.trim()));
const PASSWORD = 'benchmark passphrase that is long enough';
const ROOT = new URL('../', import.meta.url).pathname;
/** The instance's ADMIN_API_KEY, for registering the webhook endpoints of the events row. */
const ADMIN_KEY = `bench-admin-${randomBytes(16).toString('hex')}`;

interface Row extends LoadResult {
  flow: string;
  peakRssMb?: number;
  heapMb: number;
  /** CPU milliseconds per request of the instance, PostgreSQL and the load generator during the run. */
  cpuMs: { instance: number; postgres: number; generator: number };
}

/** Waits (at most 60 s) until the development mailbox shows no undelivered mail. */
async function settle(base: string): Promise<void> {
  console.log('waiting for set-up mail to be delivered…');
  for (let i = 0; i < 240; i++) {
    const res = await fetch(`${base}/dev/mailbox.json?limit=500`).catch(() => undefined);
    if (!res?.ok) return; // an instance with real SMTP: nothing to wait for here
    const mails = (await res.json()) as Array<{ sent_at: string | null }>;
    if (mails.every((m) => m.sent_at)) return;
    await new Promise((r) => setTimeout(r, 250));
  }
}


async function post(base: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : {} };
}

/** Runs `fn` over `items` with at most `limit` in flight. */
async function pool<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  }));
  return out;
}

/** What one measurement of the raw rate found at each number of hashes in flight. */
const argonByWorkers: Array<Record<number, number>> = [];

/**
 * argon2id verifications per second with every core busy (the ceiling for password logins): the
 * better of one hash in flight per core and two per core, each for `seconds`. Until the eighteenth
 * session only two per core were measured, which on this 2-core host is 15–20 % slower than one per
 * core (four 19 MiB hashes sharing two cores' caches; 9.3 against 11.5 ms of CPU per hash in a
 * standalone run), so the login ratios were taken against a rate below what the library reaches.
 * The instance itself runs one hash per core (src/crypto/password.ts).
 */
async function argon2Rate(seconds: number): Promise<number> {
  const phc = await hash(PASSWORD, { algorithm: 2, memoryCost: 19456, timeCost: 2, parallelism: 1 });
  const cores = Math.max(2, availableParallelism());
  const found: Record<number, number> = {};
  for (const workers of [cores, cores * 2]) {
    const end = Date.now() + seconds * 1000;
    let count = 0;
    await Promise.all(Array.from({ length: workers }, async () => {
      while (Date.now() < end) {
        await verify(phc, PASSWORD);
        count++;
      }
    }));
    found[workers] = count / seconds;
  }
  argonByWorkers.push(found);
  return Math.max(...Object.values(found));
}

function row(flow: string, r: LoadResult): Row {
  const per = (seconds: number) => (r.requests > 0 ? (seconds * 1000) / r.requests : 0);
  const cpuMs = { instance: per(phaseCpu.instance), postgres: per(phaseCpu.postgres), generator: per(phaseCpu.generator) };
  return { flow, peakRssMb: samplePid ? phasePeakMb : undefined, heapMb: phaseHeapMb, cpuMs, ...r };
}

let samplePid: number | undefined;
let phasePeakMb = 0;
/** CPU seconds each part used during the last run. */
let phaseCpu = { instance: 0, postgres: 0, generator: 0 };
let phaseHeapMb = 0;
let metricsBase = '';
/** The instance's V8 heap size from its own /metrics. */
async function heapTotalMb(): Promise<number> {
  try {
    const text = await (await fetch(`${metricsBase}/metrics`)).text();
    return Number(/^twofold_nodejs_heap_size_total_bytes (\d+)/m.exec(text)?.[1] ?? 0) / 1048576;
  } catch {
    return 0;
  }
}
/**
 * The load generator: autocannon in a child process of its own (bench/load-generator.ts), so the
 * service, this driver and the load are three processes and none steals the others' event loop.
 */
let generator: ChildProcess | undefined;
async function startGenerator(): Promise<void> {
  const child = fork(join(ROOT, 'bench/load-generator.ts'), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code) => reject(new Error(`the load generator exited (${code})`)));
  });
  generator = child;
}
function generate(job: LoadJob): Promise<LoadResult> {
  const child = generator!;
  return new Promise((resolve, reject) => {
    child.once('message', (m: { ok: boolean; result?: LoadResult; error?: string }) => (m.ok ? resolve(m.result!) : reject(new Error(m.error))));
    child.send(job);
  });
}

/** Runs `job` in the load generator, sampling the instance's resident memory every 100 ms meanwhile. */
function run(job: LoadJob): Promise<LoadResult> {
  phasePeakMb = 0;
  phaseHeapMb = 0;
  const pids = instancePids(samplePid);
  const timer = setInterval(() => {
    const rss = pids.reduce((a, pid) => a + (memoryOf(pid)?.rssMb ?? 0), 0);
    phasePeakMb = Math.max(phasePeakMb, rss);
  }, 100);
  const cpuBefore = cpuSnapshot(samplePid);
  return generate(job).finally(async () => {
    clearInterval(timer);
    const cpuAfter = cpuSnapshot(samplePid);
    phaseCpu = { instance: cpuAfter.instance - cpuBefore.instance, postgres: cpuAfter.postgres - cpuBefore.postgres, generator: cpuAfter.generator - cpuBefore.generator };
    // One heap reading at the end of the run: polling /metrics during it would load the instance.
    if (samplePid) phaseHeapMb = await heapTotalMb();
  });
}

async function startInstance(): Promise<{ base: string; child: ChildProcess; cleanup: () => Promise<void>; database: string; databaseUrl: string }> {
  const adminUrl = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  let databaseUrl = '';
  let dropDb: (() => Promise<void>) | undefined;
  try {
    const admin = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 2000 });
    await admin.connect();
    const name = `twofold_bench_${randomBytes(4).toString('hex')}`;
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const u = new URL(adminUrl);
    u.pathname = `/${name}`;
    databaseUrl = u.toString();
    dropDb = async () => {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    };
  } catch {
    console.log('PostgreSQL not reachable: benchmarking on embedded PGlite');
  }
  const dataDir = mkdtempSync(join(tmpdir(), 'twofold-bench-'));
  const port = await freePort();
  console.log('building (npm run build)…');
  execSync('npm run build --silent', { cwd: ROOT, stdio: 'inherit' });
  // The instance runs with the node flags of `npm run start:prod` (BENCH_NODE_FLAGS overrides them).
  const prod = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts['start:prod'] ?? '';
  // The script is `NAME=value … node <flags> dist/server.js`: the words before `node` (the allocator's
  // setting) are the instance's environment, those between it and the entry point its flags.
  const words = prod.split(/\s+/).filter(Boolean);
  const nodeAt = words.indexOf('node');
  const prodEnv = Object.fromEntries(words.slice(0, nodeAt).map((w) => [w.slice(0, w.indexOf('=')), w.slice(w.indexOf('=') + 1)]));
  const flags = process.env.BENCH_NODE_FLAGS?.split(/\s+/).filter(Boolean) ?? words.slice(nodeAt + 1, words.indexOf('dist/server.js'));
  console.log(`instance: ${Object.entries(prodEnv).map(([k, v]) => `${k}=${v} `).join('')}node ${[...flags, 'dist/server.js'].join(' ')}`);
  // MAX_SESSIONS_PER_USER set, not inherited: the login rows' user pools are sized for the default 100.
  const child = spawn(process.execPath, [...flags, 'dist/server.js'], {
    cwd: ROOT,
    env: { ...process.env, ...prodEnv, PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dataDir, DATABASE_URL: databaseUrl, REDIS_URL: '', SMTP_URL: '', RATE_LIMIT_DISABLED: 'true', LOG_LEVEL: 'warn', NODE_ENV: 'development', ADMIN_API_KEY: ADMIN_KEY, WEBHOOK_ALLOW_PRIVATE: 'true', MAX_SESSIONS_PER_USER: '100' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 240; i++) {
    if (child.exitCode !== null) throw new Error('the instance exited during start-up');
    try {
      if ((await fetch(`${base}/healthz`)).ok) break;
    } catch {
      // not yet listening
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return {
    base,
    child,
    database: databaseUrl ? 'PostgreSQL (loopback)' : 'PGlite',
    databaseUrl,
    cleanup: async () => {
      await new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      });
      await dropDb?.().catch(() => {});
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

function memoryOf(pid: number | undefined): { peakMb: number; rssMb: number } | undefined {
  if (!pid) return undefined;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
    return { peakMb: kb('VmHWM') / 1024, rssMb: kb('VmRSS') / 1024 };
  } catch {
    return undefined;
  }
}

/** The instance's processes: the one started and, with WEB_CONCURRENCY, the workers it forked. */
function instancePids(root: number | undefined): number[] {
  if (!root) return [];
  const pids = [root];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      // After the command name: state, then the parent's pid.
      if (Number(readFileSync(`/proc/${d}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[1]) === root) pids.push(Number(d));
    } catch {
      // ended meanwhile
    }
  }
  return pids;
}

/**
 * CPU seconds (user + system) a process has used, from /proc (0 when it is gone); with `reaped`, also
 * what its children used before they exited and were waited for. `statFile` names one thread's
 * (`/proc/<pid>/task/<tid>/stat`, same fields) instead of the whole process's.
 */
function cpuOf(pid: number | undefined, reaped = false, statFile = `/proc/${pid}/stat`): number {
  if (!pid) return 0;
  try {
    // Fields after the command name: utime and stime are the 12th and 13th, cutime and cstime (the
    // reaped children's) the 14th and 15th, in clock ticks (100 per second on Linux).
    const f = readFileSync(statFile, 'utf8').replace(/^.*\) /, '').split(' ').map(Number);
    return (f[11]! + f[12]! + (reaped ? f[13]! + f[14]! : 0)) / 100;
  } catch {
    return 0;
  }
}

/** CPU seconds used so far by each part of the run: the instance, PostgreSQL's processes, the load generator and this driver (with the webhook sinks). */
function cpuSnapshot(instancePid: number | undefined): Record<'instance' | 'instanceMain' | 'postgres' | 'generator' | 'driver', number> {
  let postgres = 0;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      // A backend that ended between two snapshots would take its time with it (the split once showed
      // PostgreSQL at -0.1 ms per login); the postmaster's reaped-children total keeps it.
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'postgres') postgres += cpuOf(Number(pid), true);
    } catch {
      // ended meanwhile
    }
  }
  const own = process.cpuUsage();
  const instance = instancePids(instancePid).reduce((a, pid) => a + cpuOf(pid), 0);
  // The main thread alone (JavaScript, the HTTP and SQL clients, their system calls): the rest of the
  // instance is its libuv pool (the password hashes, the RS256 signatures) and V8's helper threads.
  // Every process's own: with WEB_CONCURRENCY the started process is a supervisor, and the workers run the service.
  const instanceMain = instancePids(instancePid).reduce((a, pid) => a + cpuOf(pid, false, `/proc/${pid}/task/${pid}/stat`), 0);
  return { instance, instanceMain, postgres, generator: cpuOf(generator?.pid), driver: (own.user + own.system) / 1e6 };
}

/** Signs up `username`, logs in and registers a passkey with the software authenticator; returns it for the load generator. */
async function registerBenchPasskey(base: string, username: string): Promise<ExportedPasskey> {
  const created = await post(base, '/api/v1/user', { username, email: `${username}@example.com`, password1: PASSWORD, password2: PASSWORD });
  if (created.status !== 201) throw new Error(`passkey sign-up failed: ${JSON.stringify(created.json)}`);
  const token = (await post(base, '/api/v1/auth-jwt/login', { username, password: PASSWORD })).json.access_token as string;
  const auth = { authorization: `Bearer ${token}` };
  const options = (await post(base, '/api/v1/passkeys/registration/options', {}, auth)).json as { challenge: string; rp: { id?: string }; user: { id: string } };
  // The origin passkeys are bound to: the instance's own (http://localhost:PORT for a loopback address).
  const u = new URL(base);
  if (u.hostname === '127.0.0.1' || u.hostname === '[::1]') u.hostname = 'localhost';
  const authenticator = new SoftwareAuthenticator(u.origin);
  const { response, credential } = authenticator.create(options);
  const verified = await post(base, '/api/v1/passkeys/registration/verify', { credential: response, name: 'bench' }, auth);
  if (verified.status !== 201) throw new Error(`passkey registration failed: ${JSON.stringify(verified.json)}`);
  return {
    id: response.id,
    pem: credential.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    userHandle: credential.userHandle,
    rpId: credential.rpId,
    origin: u.origin,
  };
}

async function main(): Promise<void> {
  const external = process.env.BENCH_URL;
  const instance = external ? undefined : await startInstance();
  const base = external ?? instance!.base;
  samplePid = instance?.child.pid;
  metricsBase = base;
  try {
    await startGenerator();
    console.log(`benchmarking ${base} (${instance?.database ?? 'external instance'}), ${DURATION} s per timed run`);
    console.log('measuring raw argon2id verify rate (m=19 MiB, t=2, p=1, every core busy; one and two hashes in flight per core)…');
    // Measured again after the login rows and at the end: on a shared host the rate moved by ±20 %
    // between runs, and one window can miss a core. The ratios use the median; the range is printed.
    const argonRates = [await argon2Rate(5)];
    const argon = argonRates[0]!;

    // Users: one for password logins and sessions; a pool with TOTP (pending at sign-up, activated by
    // their first login) for one-step TOTP logins: each code works once per user, so each user serves
    // three logins at strictly rising time steps (current-1, then current, then current+1).
    const tag = randomBytes(3).toString('hex');
    const plain = `bench_${tag}`;
    const created = await post(base, '/api/v1/user', { username: plain, email: `${plain}@example.com`, password1: PASSWORD, password2: PASSWORD });
    if (created.status !== 201) throw new Error(`sign-up failed: ${JSON.stringify(created.json)}`);
    // A code works once per user and time step, and steps must rise: after activation each user has
    // one or two usable steps (up to current+1), so the pool holds about one user per login.
    const totpTarget = FLOWS.has('totp') ? Math.ceil(argon * 1.1 * DURATION) + 20 : 0;
    console.log(`creating ${totpTarget} TOTP users…`);
    const totpUsers = await pool(Array.from({ length: totpTarget }, (_, i) => `bt_${tag}_${i}`), 8, async (username) => {
      const r = await post(base, '/api/v1/user', { username, email: `${username}@example.com`, password1: PASSWORD, password2: PASSWORD, mfa: 'totp' });
      if (r.status !== 201) throw new Error(`TOTP sign-up failed: ${JSON.stringify(r.json)}`);
      const secret = (r.json.totp as { secret: string }).secret;
      // Activate the pending secret now, so the timed run measures logins of enrolled users, not
      // first-login activations. A request can cross a 30 s boundary in flight: then retry once.
      for (let attempt = 0; ; attempt++) {
        const step = currentStep();
        const activated = await post(base, '/api/v1/auth-jwt/login', { username, password: PASSWORD, security_code: codeFor(secret, step) });
        if (activated.status === 200) return { username, secret, lastStep: step };
        if (attempt === 1) throw new Error(`TOTP activation failed: ${JSON.stringify(activated.json)}`);
      }
    });

    // Password logins (their row and the webhook row) go round a pool of users, each staying under
    // MAX_SESSIONS_PER_USER (100 by default) live sessions over the whole run: about 7 windows of
    // logins at up to 1.3 times the argon2id rate, 80 sessions per user at most.
    const loginTarget = FLOWS.has('password') || FLOWS.has('events') ? Math.ceil(((7 * DURATION + 6) * argon * 1.3) / 80) : 0;
    console.log(`creating ${loginTarget} password users…`);
    const loginUsers = await pool(Array.from({ length: loginTarget }, (_, i) => `bl_${tag}_${i}`), 8, async (username) => {
      const r = await post(base, '/api/v1/user', { username, email: `${username}@example.com`, password1: PASSWORD, password2: PASSWORD });
      if (r.status !== 201) throw new Error(`sign-up failed: ${JSON.stringify(r.json)}`);
      return username;
    });
    const passwordLogins = (duration: number) => run({ kind: 'login-as', base, connections: 16, duration, usernames: loginUsers, password: PASSWORD });

    const login = await post(base, '/api/v1/auth-jwt/login', { username: plain, password: PASSWORD });
    const access = login.json.access_token as string;
    // user-info: 64 users with a session each; the load generator sends their access tokens in turn.
    const infoConnections = 64;
    const bearers = FLOWS.has('user-info')
      ? await pool(Array.from({ length: infoConnections }, (_, i) => `bu_${tag}_${i}`), 8, async (username) => {
        const r = await post(base, '/api/v1/user', { username, email: `${username}@example.com`, password1: PASSWORD, password2: PASSWORD });
        if (r.status !== 201) throw new Error(`sign-up failed: ${JSON.stringify(r.json)}`);
        const loggedIn = await post(base, '/api/v1/auth-jwt/login', { username, password: PASSWORD });
        if (loggedIn.status !== 200) throw new Error(`login failed: ${JSON.stringify(loggedIn.json)}`);
        return loggedIn.json.access_token as string;
      })
      : [];
    const connections = 32;
    // A few more sessions than connections: a request lost to a timeout or a reset takes its session's
    // token with it (no answer, no rotated token), and the pool must not run dry.
    const sessions = await pool(Array.from({ length: connections + 8 }), 8, async () => (await post(base, '/api/v1/auth-jwt/login', { username: plain, password: PASSWORD })).json.refresh_token as string);

    // Passkey users: registered through the API with the tests' software authenticator (P-256, "none"),
    // enough for 80 sign-ins each at 2.6 times the argon2id rate (passkey logins have run at up to 2.5 times
    // the password logins' rate), so that none reaches MAX_SESSIONS_PER_USER.
    const passkeyTarget = FLOWS.has('passkey') ? Math.ceil((DURATION * argon * 2.6) / 80) : 0;
    console.log(`creating ${passkeyTarget} passkey users…`);
    const passkeys = await pool(Array.from({ length: passkeyTarget }, (_, i) => `bp_${tag}_${i}`), 8, (username) => registerBenchPasskey(base, username));

    const rows: Row[] = [];
    // Let the set-up's background work settle (the outbox worker delivering ~2 mails per user to the
    // development mailbox), so the timed runs measure the flows themselves.
    await settle(base);
    // The password-strength worker of the sign-ups above (~55 MB) ends 10 s after the last check;
    // none of the timed flows use it, so their memory is measured without it (the whole-process
    // peak printed at the end still includes it).
    console.log('waiting for the sign-up password-strength worker to end…');
    await new Promise((r) => setTimeout(r, 11_000));
    // Untimed warm-up, so the first timed run measures the service, not the JIT compiling it.
    console.log('warm-up…');
    const bearer = { authorization: `Bearer ${access}` };
    await run({ kind: 'get', url: `${base}/api/v1/auth-jwt/user-info`, connections: 16, duration: 3, headers: bearer });
    if (FLOWS.has('user-info')) console.log('user-info…');
    if (FLOWS.has('user-info')) rows.push(row('GET user-info (Bearer)', await run({ kind: 'get-as', base, path: '/api/v1/auth-jwt/user-info', connections: infoConnections, duration: DURATION, bearers })));

    if (FLOWS.has('refresh')) console.log('refresh…');
    if (FLOWS.has('refresh')) rows.push(row('POST refresh (rotation)', await run({ kind: 'refresh', base, connections, duration: DURATION, sessions })));

    if (FLOWS.has('password')) console.log('password login…');
    if (FLOWS.has('password')) rows.push(row('POST login (password only)', await passwordLogins(DURATION)));

    if (FLOWS.has('totp')) console.log('TOTP login…');
    if (FLOWS.has('totp')) rows.push(row('POST login + security_code', await run({ kind: 'totp-login', base, connections: 16, password: PASSWORD, users: totpUsers })));
    if (FLOWS.has('password') || FLOWS.has('totp')) argonRates.push(await argon2Rate(3));

    if (FLOWS.has('passkey')) {
      console.log('passkey login…');
      const pk = await run({ kind: 'passkey-login', base, connections: 16, duration: DURATION, passkeys });
      // Two requests (options, then the assertion) per login: the row counts logins.
      rows.push(row('passkey login (2 req/login)', { ...pk, rps: pk.rps / 2 }));
    }

    // Issue 10: password login with three webhook endpoints subscribed to every event (each login
    // announces login.succeeded to all three) against the same login without them. The delivery is
    // the outbox worker's work; the request only adds the event's rows to its transaction. Local sinks
    // answer 204. Windows alternate (without, with, three times) so that the machine's drift does not
    // decide the ratio, and a "with" window counts until the worker has delivered everything it caused:
    // sustained logins/s = logins in the window / (window + time to drain the deliveries).
    let events: Row | undefined;
    let eventsRatio: number | undefined;
    if (instance && FLOWS.has('events')) {
      const sink = createServer((req, res) => {
        req.resume();
        req.on('end', () => res.writeHead(204).end());
      });
      await new Promise<void>((r) => sink.listen(0, '127.0.0.1', () => r()));
      const sinkUrl = `http://127.0.0.1:${(sink.address() as AddressInfo).port}`;
      const admin = { authorization: `Bearer ${ADMIN_KEY}` };
      // Windows as long as the other runs: the worker polls every second, and the wait for its last poll
      // (counted in the drain) is latency, not work; a short window would weigh it as throughput.
      const window = Math.max(2, DURATION);
      const login = () => passwordLogins(window);
      let without = { logins: 0, seconds: 0 };
      let withHooks = { logins: 0, seconds: 0 };
      let last: LoadResult | undefined;
      // CPU per login of each part, summed over the windows (a "with" window up to the end of its drain).
      type Cpu = ReturnType<typeof cpuSnapshot>;
      const cpuWithout: Cpu = { instance: 0, instanceMain: 0, postgres: 0, generator: 0, driver: 0 };
      const cpuWith: Cpu = { ...cpuWithout };
      const addCpu = (into: Cpu, before: Cpu, after: Cpu) => {
        for (const k of Object.keys(into) as Array<keyof Cpu>) into[k] += after[k] - before[k];
      };
      const register = async () => {
        const ids: string[] = [];
        for (let i = 0; i < 3; i++) {
          const r = await post(base, '/api/v1/admin/webhooks', { url: `${sinkUrl}/hook/${i}`, events: ['*'] }, admin);
          if (r.status !== 201) throw new Error(`webhook registration failed: ${r.status}`);
          ids.push(r.json.id as string);
        }
        return ids;
      };
      const unregister = async (ids: string[]) => {
        for (const id of ids) await fetch(`${base}/api/v1/admin/webhooks/${id}`, { method: 'DELETE', headers: admin });
      };
      // Drained when no delivery of these endpoints is pending, counted in the database. The newest
      // delivery of each endpoint's log being delivered is not enough: two logins that overlap can
      // commit in the other order than their events were numbered, and the later-numbered one then goes
      // first (README, "Delivery guarantees"), so an older one could still be pending; the endpoints
      // were then deleted under it. (On PGlite, an external instance's database is not ours to read: the
      // log's newest entry it is.)
      const pending = instance.databaseUrl ? new pg.Client({ connectionString: instance.databaseUrl }) : undefined;
      await pending?.connect();
      const drained = async (ids: string[]) => {
        for (let i = 0; i < 2400; i++) {
          if (pending) {
            const r = await pending.query<{ n: number }>('SELECT count(*)::int AS n FROM event_deliveries WHERE endpoint_id = ANY ($1::uuid[]) AND delivered_at IS NULL AND failed_at IS NULL', [ids]);
            if (r.rows[0]!.n === 0) return;
          } else {
            const logs = await Promise.all(ids.map(async (id) => (await (await fetch(`${base}/api/v1/admin/webhooks/${id}/deliveries?limit=1`, { headers: admin })).json()) as Array<{ status: string }>));
            if (logs.every((l) => l.length > 0 && l.every((d) => d.status === 'delivered'))) return;
          }
          await new Promise((r) => setTimeout(r, 25));
        }
        throw new Error('the webhook deliveries were not drained within 60 s');
      };
      // Untimed, like the warm-up above: the first window with endpoints would otherwise also pay for
      // compiling the delivery path (signing, the HTTP client, the worker's queries), which the other
      // rows never run. Measured without it: the first "with" window ran at 80–82 % of its "without"
      // window, the later ones at 94–100 %.
      console.log('warm-up of the delivery path…');
      const warm = await register();
      await passwordLogins(3);
      await drained(warm);
      await unregister(warm);
      console.log(`password login without / with three webhook endpoints, alternating ${window}-s windows…`);
      for (let round = 0; round < 3; round++) {
        const c0 = cpuSnapshot(instance.child.pid);
        const a = await login();
        addCpu(cpuWithout, c0, cpuSnapshot(instance.child.pid));
        without = { logins: without.logins + a.rps * window, seconds: without.seconds + window };
        const ids = await register();
        const c1 = cpuSnapshot(instance.child.pid);
        last = await login();
        const started = Date.now();
        await drained(ids);
        const drainSeconds = (Date.now() - started) / 1000;
        addCpu(cpuWith, c1, cpuSnapshot(instance.child.pid));
        withHooks = { logins: withHooks.logins + last.rps * window, seconds: withHooks.seconds + window + drainSeconds };
        console.log(`  round ${round + 1}: without ${a.rps.toFixed(1)}/s, with ${last.rps.toFixed(1)}/s in the window, then ${drainSeconds.toFixed(2)} s to deliver the rest`);
        await unregister(ids);
      }
      sink.close();
      await pending?.end();
      const perLogin = (c: Cpu, logins: number) => Object.entries(c).map(([k, v]) => `${k} ${((v * 1000) / logins).toFixed(1)}`).join(', ');
      // instanceMain is the part of `instance` spent on its main thread, where the worker's deliveries run.
      console.log(`  CPU ms per login without: ${perLogin(cpuWithout, without.logins)}`);
      console.log(`  CPU ms per login with:    ${perLogin(cpuWith, withHooks.logins)} (the driver's part includes the three sinks and polling the delivery logs)`);
      const withRps = withHooks.logins / withHooks.seconds;
      eventsRatio = withRps / (without.logins / without.seconds);
      events = row('login, 3 webhook endpoints', { ...last!, rps: withRps });
      rows.push(events);
    }

    const memory = memoryOf(instance?.child.pid);
    if (FLOWS.has('password') || FLOWS.has('totp')) argonRates.push(await argon2Rate(3));
    const sortedRates = [...argonRates].sort((a, b) => a - b);
    const argonMedian = sortedRates[Math.floor(sortedRates.length / 2)]!;
    const pad = (s: string, n: number) => s.padEnd(n);
    const num = (n: number, n2 = 8) => n.toFixed(n < 100 ? 1 : 0).padStart(n2);
    console.log('\n| flow                         |    req/s |  p50 ms |  p99 ms | non-2xx | errors | peak RSS MB (V8 heap at end) |');
    console.log('|------------------------------|---------:|--------:|--------:|--------:|-------:|-----------------------------:|');
    for (const r of rows) console.log(`| ${pad(r.flow, 28)} | ${num(r.rps)} | ${num(r.p50, 7)} | ${num(r.p99, 7)} | ${String(r.non2xx).padStart(7)} | ${String(r.errors).padStart(6)} | ${(r.peakRssMb === undefined ? '–' : `${r.peakRssMb.toFixed(0)} (${r.heapMb.toFixed(0)})`).padStart(28)} |`);
    if (instance) {
      // Where the two cores went, per request: what throughput alone hides on a shared machine.
      console.log('\n| flow                         | CPU ms/request: instance | PostgreSQL | load generator |');
      console.log('|------------------------------|-------------------------:|-----------:|---------------:|');
      for (const r of rows) console.log(`| ${pad(r.flow, 28)} | ${r.cpuMs.instance.toFixed(2).padStart(24)} | ${r.cpuMs.postgres.toFixed(2).padStart(10)} | ${r.cpuMs.generator.toFixed(2).padStart(14)} |`);
    }
    console.log(`\nargon2id raw verify rate (same run): ${argonMedian.toFixed(1)}/s${argonRates.length > 1 ? ` (median of ${argonRates.length}: ${argonRates.map((r) => r.toFixed(1)).join(', ')} at the start, after the login rows and at the end)` : ''}`);
    // Each measurement is the better of one and two hashes in flight per core; both are printed.
    console.log(`  hashes in flight → verifies/s: ${argonByWorkers.map((m) => Object.entries(m).map(([w, r]) => `${w} → ${r.toFixed(1)}`).join(', ')).join('; ')}`);
    const byFlow = (prefix: string) => rows.find((r) => r.flow.startsWith(prefix));
    const [info, refresh, pwd, totp, passkeyRow] = ['GET user-info', 'POST refresh', 'POST login (password', 'POST login + security', 'passkey login'].map(byFlow);
    const ratio = (rps: number) => `${((rps / argonMedian) * 100).toFixed(0)} %${argonRates.length > 1 ? ` (${((rps / sortedRates.at(-1)!) * 100).toFixed(0)}–${((rps / sortedRates[0]!) * 100).toFixed(0)} % against each measurement)` : ''}`;
    if (pwd) console.log(`password login / argon2id: ${ratio(pwd.rps)} (target ≥ 85 %)`);
    if (pwd && passkeyRow) console.log(`passkey login / password login: ${((passkeyRow.rps / pwd.rps) * 100).toFixed(0)} % (no argon2: bound by the P-256 verification and two round trips)`);
    if (totp) console.log(`TOTP login / argon2id:     ${ratio(totp.rps)} (target ≥ 85 %)`);
    if (eventsRatio !== undefined) console.log(`password login with 3 webhook endpoints / without (alternating windows, deliveries drained): ${(eventsRatio * 100).toFixed(0)} % (target ≥ 90 %)`);
    if (info) console.log(`user-info: ${info.rps.toFixed(0)} req/s, p99 ${info.p99} ms (target ≥ 5000 req/s, p99 < 50 ms)`);
    if (refresh) console.log(`refresh:   ${refresh.rps.toFixed(0)} req/s (target ≥ 1000 req/s)`);
    if (memory) {
      const underLoad = Math.max(...rows.map((r) => r.peakRssMb ?? 0));
      console.log(`instance memory: peak RSS during the timed runs ${underLoad.toFixed(0)} MB (target ≤ 150 MB); peak of the whole process incl. set-up ${memory.peakMb.toFixed(0)} MB, now ${memory.rssMb.toFixed(0)} MB`);
    }
    const bad = rows.filter((r) => r.non2xx > 0 || r.errors > 0);
    if (bad.length) console.log(`\nWARNING: failed requests in ${bad.map((r) => r.flow).join(', ')} — the figures above include them.`);
  } finally {
    generator?.kill();
    await instance?.cleanup();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
