// Compiles the sources and the npm-test suites to .test-build/ and copies the files the code reads
// beside itself, as `npm run build` does for dist/. `npm test` runs the compiled suites: through tsx's
// loader, every test process (one per file) spent about 1.7 s of CPU before its first test, a fifth
// of the suite's CPU time. esbuild is the compiler tsx runs anyway, so the code under test is the
// same; each file is compiled on its own (relative imports stay imports, `.ts` becomes `.js`), and
// `npm run typecheck` does the type checking. The tests of `npm start` (and those built on it) still
// run the sources through tsx, as in an operator's checkout; the CLI and other servers run compiled.
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';

const OUT = '.test-build';
const DIRS = ['src', 'scripts', 'test/helpers', 'test/unit', 'test/db', 'test/routes', 'test/e2e'];

/** Every TypeScript file under `dir`. */
function sources(dir) {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts'))
    .map((e) => join(e.parentPath, e.name));
}

// Whole tree rebuilt: a deleted test must not keep running from an old compiled copy.
rmSync(OUT, { recursive: true, force: true });
await build({
  entryPoints: DIRS.flatMap(sources),
  outdir: OUT,
  outbase: '.',
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // bundle only to get the onResolve hook: every import stays external, relative ones renamed to .js.
  bundle: true,
  logLevel: 'warning',
  plugins: [{
    name: 'keep-imports',
    setup(b) {
      b.onResolve({ filter: /.*/ }, (args) => {
        if (args.kind === 'entry-point') return undefined;
        return { path: args.path.startsWith('.') ? args.path.replace(/\.ts$/, '.js') : args.path, external: true };
      });
    },
  }],
});
for (const dir of ['src/db/migrations', 'src/web/assets']) cpSync(dir, `${OUT}/${dir}`, { recursive: true });
// The `twofold` command as a built image has it: bin/twofold.js beside dist/ (here the compiled src/),
// so the CLI tests start compiled code rather than tsx's loader in each of their two dozen processes.
cpSync('bin/twofold.js', `${OUT}/bin/twofold.js`);
symlinkSync('src', `${OUT}/dist`);

// The test files run in a dozen processes, not one each: every process first spends about 1.3 s of
// CPU loading the code (0.65 s), compiling PGlite's WebAssembly and warming the first app up, which
// was a third of the suite's CPU time on 97 files. Each chunk imports its files in turn (each file's
// tests still get databases and apps of their own); `node --test` runs the chunks two at a time,
// the longest first. Chunks are balanced by test/file-weights.json (seconds per file; a file not in
// it counts as DEFAULT_WEIGHT): refresh it with `npm run test:weights` when files come and go.
const CHUNKS = 12;
const DEFAULT_WEIGHT = 3;
const weights = existsSync('test/file-weights.json') ? JSON.parse(readFileSync('test/file-weights.json', 'utf8')).seconds : {};
const testFiles = ['test/unit', 'test/db', 'test/routes', 'test/e2e'].flatMap((dir) =>
  readdirSync(dir).filter((f) => f.endsWith('.test.ts')).map((f) => `${dir}/${f}`));
const weightOf = (f) => weights[f] ?? DEFAULT_WEIGHT;
const chunks = Array.from({ length: CHUNKS }, () => ({ weight: 0, files: [] }));
// A file that needs a process to itself says so (what it checks happens once per process, say).
const OWN_PROCESS = '// npm test: a process of its own';
const alone = testFiles.filter((f) => readFileSync(f, 'utf8').includes(OWN_PROCESS));
for (const f of alone) chunks.push({ weight: weightOf(f), files: [f] });
// Longest file first, each into the lightest chunk so far (LPT scheduling).
for (const f of [...testFiles].filter((f) => !alone.includes(f)).sort((a, b) => weightOf(b) - weightOf(a) || a.localeCompare(b))) {
  const lightest = chunks.slice(0, CHUNKS).reduce((min, c) => (c.weight < min.weight ? c : min));
  lightest.files.push(f);
  lightest.weight += weightOf(f);
}
mkdirSync(`${OUT}/chunks`);
chunks
  .filter((c) => c.files.length > 0)
  .sort((a, b) => b.weight - a.weight)
  .forEach((c, i) => {
    const imports = c.files.sort().map((f) => `import '../${f.replace(/\.ts$/, '.js')}';`).join('\n');
    writeFileSync(`${OUT}/chunks/${String(i + 1).padStart(2, '0')}.test.js`, `// ${c.files.length} test files, about ${Math.round(c.weight)} s alone (scripts/build-tests.mjs)\n${imports}\n`);
  });
