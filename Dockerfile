# Worker and model-server image (docs/image.md). One image runs all three workers and SageMaker's
# `serve` entry point:
#   docker run <image> node dist/src/workers/<pipeline|data|training>.js
#   docker run <image> serve     (SageMaker: GET /ping, POST /invocations on 8080, model in /opt/ml/model)
# Build: docker build -t cnn-skin-cancer-worker:<version> .   (here: npm run image -- build)

# --- build: npm dependencies, the native TensorFlow backend, the ops library, tsc ---------------
# The same set-up as a developer's (scripts/setup.sh); compilers and dev dependencies stay here.
FROM node:24-bookworm-slim AS build
# python3 + pip fetch the tensorflow-cpu wheel and run node-gyp; unzip unpacks the wheel; patch
# applies the binding patch; g++ and make compile the binding and the ops library.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-pip unzip patch g++ make \
    && rm -rf /var/lib/apt/lists/*
# node-gyp takes Node's headers from the image (the node images ship them in /usr/local/include/node)
# instead of downloading them from nodejs.org.
ENV npm_config_nodedir=/usr/local npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
WORKDIR /app
# Only what the set-up and the build of src/ need (tsconfig.build.json also includes scripts/*.ts
# and bench/, which the image does not run: they are not copied, so tsc does not compile them).
COPY package.json package-lock.json requirements-stack.txt tsconfig.json tsconfig.build.json ./
COPY scripts/setup.sh ./scripts/
COPY scripts/patches ./scripts/patches
COPY src ./src
# Then the runtime leaves: no dev dependencies; no headers, object files or build state; TensorFlow's
# libraries without their static symbol tables (strip keeps the dynamic symbols that are linked
# against, ~220 MB less) and without the source maps of TensorFlow.js's bundles (~190 MB; node
# reads none without --enable-source-maps); Temporal's core bridge for this platform only. Last,
# the native backend and the ops library must load.
RUN SKIP_PYTHON_STACK=1 bash scripts/setup.sh \
    && npm prune --omit=dev --ignore-scripts --loglevel=error \
    && tfjs=node_modules/@tensorflow/tfjs-node \
    && rm -rf "$tfjs/deps/include" "$tfjs"/build-tmp-napi-v* "$tfjs/deps/.tensorflow-cpu-"* \
    && strip --strip-unneeded "$tfjs/deps/lib/libtensorflow_cc.so.2" "$tfjs/deps/lib/libtensorflow_framework.so.2" \
    && find node_modules/@tensorflow -name '*.map' -type f -delete \
    && find node_modules/@temporalio/core-bridge/releases -mindepth 1 -maxdepth 1 ! -name "$(uname -m)-unknown-linux-gnu" -exec rm -rf {} + \
    && rm -f dist/.tsbuildinfo node_modules/.setup-npm-* \
    && node -e 'require("./dist/src/ml/tf").loadTf()'

# --- runtime ---------------------------------------------------------------------------------
FROM node:24-bookworm-slim
# Read-only root file system friendly: the code belongs to root and is only read; everything the
# processes write goes under /tmp (mount an emptyDir or tmpfs there): HOME for anything that
# caches below it, PIPELINE_STATE_DIR for local endpoint state and logs.
# TF_ENABLE_ONEDNN_OPTS=0: oneDNN crashes (SIGFPE) on some 1x1 convolutions on the CPUs this was
# measured on; set it to 1 to opt back in.
ENV NODE_ENV=production \
    HOME=/tmp \
    PIPELINE_STATE_DIR=/tmp/state \
    TF_ENABLE_ONEDNN_OPTS=0
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The default build id reads the package version from here.
COPY package.json ./
COPY scripts/serve /usr/local/bin/serve
# Not root, and by number so that Kubernetes' runAsNonRoot can verify it: the uid the manifests run
# as (k8s/base/worker-common.yaml). No passwd entry is needed: HOME is set above.
USER 10001:10001
EXPOSE 8080
CMD ["node", "dist/src/workers/pipeline.js"]
