# One image for hub, supervisor and workers; docker-compose picks the command.
FROM node:20-bookworm-slim AS build
RUN npm i -g pnpm@10
WORKDIR /app
COPY . .
RUN pnpm install --frozen-lockfile && pnpm build && pnpm prune --prod

FROM node:20-bookworm-slim
WORKDIR /app
COPY --from=build /app /app
# The generated admin token lives in .data (a volume in docker-compose): private to the user the hub runs as.
# A new named volume copies this directory's owner and mode.
RUN mkdir -p /app/.data && chown node:node /app/.data && chmod 700 /app/.data
ENV HUB_HOST=0.0.0.0
USER node
CMD ["node", "apps/hub/dist/main.js"]
