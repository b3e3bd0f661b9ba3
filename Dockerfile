# syntax=docker/dockerfile:1
# Twofold: compiled build, production dependencies only, non-root, health-checked.
# scripts/container-smoke.sh runs these same steps without a container engine (CI calls it).

# 1. Build: every dependency, then the TypeScript compile (npm run build → dist/).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# 2. Production dependencies only (no compiler, linters, test tools).
FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# 3. The image: dist/, bin/ (the `twofold` command) and production node_modules; no sources, no secrets.
FROM node:20-bookworm-slim
# MALLOC_ARENA_MAX=2: as in `npm run start:prod` (README, Performance: memory).
ENV NODE_ENV=production \
    MALLOC_ARENA_MAX=2 \
    HOST=0.0.0.0 \
    PORT=8000 \
    DATA_DIR=/data
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
# The `node` user (uid 1000) of the base image owns only the data directory.
RUN mkdir -p -m 700 /data && chown node:node /data && ln -s /app/bin/twofold.js /usr/local/bin/twofold
USER node
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8000) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "--max-semi-space-size=2", "--heap-growing-percent=50", "dist/server.js"]
