#!/usr/bin/env node
// The `twofold` command (package.json "bin"). In a source checkout it runs src/cli/ through tsx, as
// `npm start` does; in a built image (no src/) it runs the compiled dist/cli/.
import { existsSync } from 'node:fs';

const source = new URL('../src/cli/main.ts', import.meta.url);
let cli;
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  cli = await import(source.href);
} else {
  cli = await import(new URL('../dist/cli/main.js', import.meta.url).href);
}
const code = await cli.runCli(process.argv.slice(2), process.env, (line) => console.log(line), (line) => console.error(line), cli.readStdin);
process.exit(code);
