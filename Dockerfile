# Worker and serving image. Builds the native TensorFlow backend the same way as local set-up.
FROM node:20-bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip python3-venv unzip build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json requirements-stack.txt tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY src ./src
RUN SKIP_PYTHON_STACK=1 bash scripts/setup.sh && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production TF_ENABLE_ONEDNN_OPTS=0
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
USER node
# Workers: `node dist/src/workers/<pipeline|data|training>.js`. SageMaker runs the image with `serve`.
# SageMaker: `docker run <image> serve` -> GET /ping and POST /invocations on 8080, model from /opt/ml/model.
COPY scripts/serve /usr/local/bin/serve
EXPOSE 8080
CMD ["node", "dist/src/workers/pipeline.js"]
