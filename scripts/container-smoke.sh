#!/usr/bin/env bash
# The Dockerfile's steps without a container engine (none exists on the CI machine): a compiled build,
# a clean directory holding only what the image holds (dist/, bin/, package*.json) with production
# dependencies only (npm ci --omit=dev), then scripts/container-smoke-run.ts starts it with
# compose.yaml's environment against the real PostgreSQL and Redis (DATABASE_URL / REDIS_URL, default
# the local ones) and an SMTP catcher, and walks /healthz, /readyz, the HEALTHCHECK, the CLI and the admin API.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "container-smoke: npm run build"
npm run build >/dev/null

STAGE="$(mktemp -d "${TMPDIR:-/tmp}/twofold-image-XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
cp package.json package-lock.json "$STAGE"/
cp -R dist bin "$STAGE"/

echo "container-smoke: npm ci --omit=dev in $STAGE"
(cd "$STAGE" && npm ci --omit=dev --no-audit --no-fund --prefer-offline >/dev/null)

# What the image must not hold: sources, tests, development dependencies.
for absent in src test node_modules/typescript node_modules/eslint node_modules/@redocly node_modules/playwright-core node_modules/smtp-server; do
  if [ -e "$STAGE/$absent" ]; then echo "container-smoke: FAILED: $absent is in the image"; exit 1; fi
done
for present in dist/server.js dist/cli/main.js dist/db/migrations/0001_init.sql dist/web/assets/style.css node_modules/fastify; do
  if [ ! -e "$STAGE/$present" ]; then echo "container-smoke: FAILED: $present is missing from the image"; exit 1; fi
done
echo "container-smoke: production dependencies only; dist/ complete"

node --import tsx scripts/container-smoke-run.ts "$STAGE"
echo "container-smoke: passed"
