// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', '.test-build/', 'data/', 'test-results/', 'src/web/assets/vendor/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-properties': ['error', { object: 'process', property: 'env', message: 'Only src/config.ts and src/server.ts read the environment.' }],
    },
  },
  {
    files: ['src/config.ts', 'src/server.ts', 'bin/**', 'scripts/container-smoke-run.ts', 'test/**', 'bench/**'],
    rules: { 'no-restricted-properties': 'off' },
  },
  {
    files: ['bin/**/*.js'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly' } },
  },
  {
    files: ['src/web/assets/**/*.js'],
    languageOptions: { globals: { window: 'readonly', document: 'readonly', fetch: 'readonly', navigator: 'readonly', location: 'readonly', URLSearchParams: 'readonly', FormData: 'readonly', Blob: 'readonly', URL: 'readonly', console: 'readonly', setTimeout: 'readonly', HTMLElement: 'readonly' } },
  },
);
