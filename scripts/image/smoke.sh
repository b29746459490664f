# shellcheck shell=bash
# `npm run image -- smoke`: the built image, run without a Docker engine (buildah run, chroot
# isolation, host network), as a non-root user on a read-only root, against a private local stack:
#   1. the stack (Temporal, MLflow, SeaweedFS for S3, moto for the SageMaker API) on ports of its
#      own, in .stack/image-smoke, with a small synthetic dataset seeded into its S3;
#   2. the image's three workers, made the current version of the Worker Deployment, and one small
#      pipeline run through the temporal CLI, waited for to its result;
#   3. the image's `serve` entry point (SageMaker's contract) on the model that run registered,
#      answering /ping and a real prediction;
#   4. everything it started stopped again, on success or failure.
# Sourced by scripts/image.sh, which provides lib.sh (IMAGE, log, die, ...).
# shellcheck disable=SC2153

# Ports: none of them the default stack's or the tests'. SMOKE_* variables override them.
SMOKE_TEMPORAL_PORT=${SMOKE_TEMPORAL_PORT:-7283}
SMOKE_TEMPORAL_UI_PORT=${SMOKE_TEMPORAL_UI_PORT:-8283}
SMOKE_MLFLOW_PORT=${SMOKE_MLFLOW_PORT:-5097}
SMOKE_MOTO_PORT=${SMOKE_MOTO_PORT:-4597}
# SeaweedFS's S3 gateway; its seven internal ports follow from SMOKE_S3_INTERNAL_PORT.
SMOKE_S3_PORT=${SMOKE_S3_PORT:-8383}
SMOKE_S3_INTERNAL_PORT=${SMOKE_S3_INTERNAL_PORT:-$((SMOKE_S3_PORT + 10000))}
# Health and metrics port of each worker, and the first port the pipeline worker may give a local
# endpoint (it takes the first free one from there).
SMOKE_WORKER_PORTS=${SMOKE_WORKER_PORTS:-pipeline:9390:9490 data:9391:9491 training:9392:9492}
SMOKE_ENDPOINT_PORT=${SMOKE_ENDPOINT_PORT:-8390}
# SageMaker's port, or this one when something on the host already listens on 8080.
SMOKE_SERVE_FALLBACK_PORT=${SMOKE_SERVE_FALLBACK_PORT:-8399}
SMOKE_STACK_DIR=.stack/image-smoke
# How long the pipeline run may take (one small model at 32 px: about 10 s here).
SMOKE_RUN_TIMEOUT=${SMOKE_RUN_TIMEOUT:-900}

DEPLOYMENT_NAME=cnn-skin-cancer
CONTAINER_PREFIX=cnn-skin-cancer-smoke
# The image's user (the Dockerfile's USER, the uid the Kubernetes manifests run as).
CONTAINER_USER=10001:10001

declare -A RUN_PIDS=()
CONTAINERS=()
SMOKE_STEP=starting
SMOKE_STARTED=
TIMINGS=()

smoke() {
  require_root
  ensure_tools buildah=buildah curl=curl jq=jq
  image_exists "$IMAGE" || die "there is no image $IMAGE here: run 'npm run image -- build' first"
  SMOKE_STARTED=$(date +%s.%N)
  # The host side (stack services, dataset generator, temporal CLI) runs from this checkout.
  if [[ ! -f dist/scripts/stack.js || ! -f dist/scripts/dataset.js || ! -x .venv/bin/temporal || ! -x .venv/bin/weed ]]; then
    log "setting up the checkout first (bash scripts/setup.sh): the stack and the dataset generator run from it"
    bash scripts/setup.sh
  fi
  # The SDK's notice that releases after January 2027 need Node 22 (the pinned one runs on 20).
  export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true
  export TEMPORAL_PORT=$SMOKE_TEMPORAL_PORT TEMPORAL_UI_PORT=$SMOKE_TEMPORAL_UI_PORT MLFLOW_PORT=$SMOKE_MLFLOW_PORT \
    MOTO_PORT=$SMOKE_MOTO_PORT S3_PORT=$SMOKE_S3_PORT S3_INTERNAL_PORT=$SMOKE_S3_INTERNAL_PORT STACK_DIR=$SMOKE_STACK_DIR
  SMOKE_DIR=$PWD/$SMOKE_STACK_DIR
  TEMPORAL_ADDR=127.0.0.1:$SMOKE_TEMPORAL_PORT
  MLFLOW_URL=http://127.0.0.1:$SMOKE_MLFLOW_PORT
  MOTO_URL=http://127.0.0.1:$SMOKE_MOTO_PORT
  S3_URL=http://127.0.0.1:$SMOKE_S3_PORT
  set_stack_env
  # Replaces scripts/image.sh's EXIT trap (nothing is registered with at_exit here).
  trap smoke_finish EXIT

  step "checking that the smoke test's ports are free"
  check_ports_free

  step "checking the image: user, read-only root, environment, native TensorFlow backend, ops library"
  check_image
  timed image

  step "starting a private stack in $SMOKE_STACK_DIR (Temporal $SMOKE_TEMPORAL_PORT, MLflow $SMOKE_MLFLOW_PORT, moto $SMOKE_MOTO_PORT, S3 $SMOKE_S3_PORT)"
  # A fresh one each time (an earlier run's is stopped by now): a registry left from an earlier
  # smoke run would hold a champion.
  rm -rf "$SMOKE_DIR"
  mkdir -p "$SMOKE_DIR/containers"
  node dist/scripts/stack.js up >&2 || die "the stack did not start; see $SMOKE_DIR/logs"
  timed stack

  step "seeding a small synthetic dataset into s3://smoke/data"
  node dist/scripts/dataset.js --out s3://smoke/data --scale 0.03 --size 32 >&2 || die "seeding the dataset failed"
  timed dataset

  step "starting the image's three workers (user $CONTAINER_USER, read-only root, host network)"
  local spec name health metrics build_id=
  for spec in $SMOKE_WORKER_PORTS; do
    IFS=: read -r name health metrics <<<"$spec"
    # Versioned, as under the Worker Controller: the image's workers must report one version, made current below.
    local env=(--env "WORKER_HEALTH_PORT=$health" --env "WORKER_METRICS_PORT=$metrics" --env TEMPORAL_WORKER_VERSIONING=on)
    [[ $name == pipeline ]] && env+=(--env "LOCAL_ENDPOINT_PORT=$SMOKE_ENDPOINT_PORT")
    start_container "$name" "${env[@]}" "${STACK_ENV[@]}" -- node "dist/src/workers/$name.js"
  done
  for spec in $SMOKE_WORKER_PORTS; do
    IFS=: read -r name health metrics <<<"$spec"
    local version
    version=$(wait_for_worker "$name")
    wait_for_http "$name" "http://127.0.0.1:$health/readyz"
    log "$name worker started: version $version; /readyz: $(curl -fsS "http://127.0.0.1:$health/readyz")"
    # Every worker of one image is one version of the deployment: they must agree.
    [[ -z $build_id || $build_id == "${version#"$DEPLOYMENT_NAME".}" ]] || die "the workers report different versions ($build_id, $version)"
    build_id=${version#"$DEPLOYMENT_NAME".}
  done
  timed workers

  step "making $DEPLOYMENT_NAME.$build_id the current version"
  set_current_version "$build_id"

  step "running one small pipeline (Basic model, 1 epoch, 32 px)"
  local workflow_id input result
  workflow_id=image-smoke-$(date +%s)
  input=$(jq -cn '{dataUri: "s3://smoke/data", imageSize: 32, epochs: 1, batchSize: 8, models: ["Basic"], lifetimeSeconds: 0, endpointName: "smoke"}')
  temporal_cli workflow start --task-queue ml-pipeline --type cnnSkinCancerWorkflow --workflow-id "$workflow_id" \
    --input "$input" >&2 || die "the workflow did not start"
  result=$(timeout "$SMOKE_RUN_TIMEOUT" "$PWD/.venv/bin/temporal" workflow result --address "$TEMPORAL_ADDR" \
    --workflow-id "$workflow_id" --output json) || die "the pipeline run $workflow_id did not complete (see $SMOKE_DIR/containers/*.log)"
  jq -e '.status == "COMPLETED"' <<<"$result" >/dev/null || die "the pipeline run $workflow_id did not complete: $result"
  log "pipeline result: $(jq -c '.result | {stage, model, version, accuracy: .metrics.test.accuracy, deployment: (.deployment | {target, endpointName, url, version})}' <<<"$result")"
  # The local endpoint the pipeline worker started inside its container (its state is under /tmp).
  local endpoint_url
  endpoint_url=$(jq -r '.result.deployment.url' <<<"$result")
  # Its GET /model takes the endpoint's admin token, which stays in the container: /ping says it serves.
  log "local endpoint $endpoint_url, GET /ping: $(curl -fsS "$endpoint_url/ping" | jq -c .)"
  timed pipeline

  step "fetching the registered model"
  local model_name model_version source model_dir
  model_name=$(jq -r '.result.deployment.registeredModelName' <<<"$result")
  model_version=$(jq -r '.result.version' <<<"$result")
  source=$(curl -fsS -G "$MLFLOW_URL/api/2.0/mlflow/model-versions/get" --data-urlencode "name=$model_name" \
    --data-urlencode "version=$model_version" | jq -r '.model_version.source') || die "MLflow has no $model_name v$model_version"
  model_dir=$SMOKE_DIR/opt-ml-model
  fetch_model "$source" "$model_dir"
  log "$model_name v$model_version: $source -> $model_dir ($(cd "$model_dir" && echo *))"

  step "serving it with the image's serve entry point (SageMaker: /opt/ml/model, /ping, /invocations)"
  local port=8080 serve_env=()
  if port_open 8080; then
    port=$SMOKE_SERVE_FALLBACK_PORT
    serve_env=(--env "SAGEMAKER_BIND_TO_PORT=$port")
  fi
  port_open "$port" && die "port $port is in use"
  start_container serve "${serve_env[@]}" --volume "$model_dir:/opt/ml/model:ro" -- serve
  wait_for_http serve "http://127.0.0.1:$port/ping"
  log "GET /model: $(curl -fsS "http://127.0.0.1:$port/model" | jq -c .)"
  predict "http://127.0.0.1:$port"
  timed serve

  SMOKE_STEP=finished
}

# --- steps ----------------------------------------------------------------------------------

step() {
  SMOKE_STEP=$*
  log "$*"
}

# Records the seconds since the previous timing (or since the start).
LAST_MARK=
timed() {
  local from=${LAST_MARK:-$SMOKE_STARTED}
  TIMINGS+=("$1=$(elapsed "$from")s")
  LAST_MARK=$(date +%s.%N)
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

check_ports_free() {
  local ports=("$SMOKE_TEMPORAL_PORT" "$SMOKE_TEMPORAL_UI_PORT" "$SMOKE_MLFLOW_PORT" "$SMOKE_MOTO_PORT" "$SMOKE_S3_PORT" "$SMOKE_ENDPOINT_PORT")
  local spec name health metrics p
  for ((p = SMOKE_S3_INTERNAL_PORT; p < SMOKE_S3_INTERNAL_PORT + 7; p++)); do ports+=("$p"); done
  for spec in $SMOKE_WORKER_PORTS; do
    IFS=: read -r name health metrics <<<"$spec"
    ports+=("$health" "$metrics")
  done
  # A stack an interrupted smoke run left behind is ours to stop (its pid files are in our folder).
  if [[ -d $SMOKE_STACK_DIR/run ]]; then node dist/scripts/stack.js down >/dev/null 2>&1 || true; fi
  for p in "${ports[@]}"; do
    port_open "$p" && die "port $p is in use; stop what listens there or choose other SMOKE_* ports"
  done
  return 0
}

# The private stack's connection settings as buildah run options: what src/stack/local-env.ts
# gives the host's workers, pointed at this stack's ports.
STACK_ENV=()
set_stack_env() {
  local kv
  for kv in "TEMPORAL_ADDRESS=$TEMPORAL_ADDR" "MLFLOW_TRACKING_URI=$MLFLOW_URL" \
    "AWS_ENDPOINT_URL_S3=$S3_URL" "AWS_ENDPOINT_URL_SAGEMAKER=$MOTO_URL" \
    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 \
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true LOG_FORMAT=json; do
    STACK_ENV+=(--env "$kv")
  done
}

temporal_cli() { "$PWD/.venv/bin/temporal" "$@" --address "$TEMPORAL_ADDR"; }

# Runs the image as container $CONTAINER_PREFIX-<name>, in the background:
#   start_container <name> [buildah run options...] -- <command...>
# buildah has no --read-only: every top-level directory of the image is bind-mounted read-only over
# itself, so only /tmp (a fresh host folder per container), /dev and buildah's own /run files are
# writable. The container's output goes to $SMOKE_DIR/containers/<name>.log.
start_container() {
  local short=$1 name=$CONTAINER_PREFIX-$1
  shift
  local opts=()
  while (($#)) && [[ $1 != -- ]]; do
    opts+=("$1")
    shift
  done
  shift
  buildah rm "$name" >/dev/null 2>&1 || true
  buildah from --quiet --pull=never --name "$name" "$IMAGE" >/dev/null || die "buildah from $IMAGE failed"
  CONTAINERS+=("$name")
  local tmp=$SMOKE_DIR/containers/$short-tmp
  mkdir -p "$tmp" && chmod 1777 "$tmp"
  # Mount points must exist before their directory is made read-only: buildah's own (/etc/hosts,
  # /etc/resolv.conf) and the volumes'. A first run on the writable root makes them, in this
  # container's layer (the image stays as it is; Docker makes them the same way).
  buildah run --isolation chroot --network host --volume "$tmp:/tmp" "${opts[@]}" "$name" -- true ||
    die "buildah run failed on $name"
  local mnt dir ro=()
  mnt=$(buildah mount "$name")
  for dir in "$mnt"/*; do
    [[ -d $dir && ! -L $dir ]] || continue
    case ${dir##*/} in dev | proc | sys | run | tmp) continue ;; esac
    ro+=(--volume "$dir:/${dir##*/}:ro")
  done
  buildah run --isolation chroot --network host --user "$CONTAINER_USER" "${ro[@]}" --volume "$tmp:/tmp" \
    "${opts[@]}" "$name" -- "$@" >"$(container_log "$short")" 2>&1 &
  RUN_PIDS[$name]=$!
}

container_log() { echo "$SMOKE_DIR/containers/$1.log"; }

container_running() { kill -0 "${RUN_PIDS[$CONTAINER_PREFIX-$1]}" 2>/dev/null; }

# What the image promises, checked from inside a container run the way the workers are: a
# non-root user, nothing writable but /tmp, HOME and PIPELINE_STATE_DIR below /tmp, oneDNN off by
# default, the project's Node.js (scripts/node-version.sh), and TensorFlow.js on the native backend
# with the training ops library loaded.
check_image() {
  start_container check -- node -e '
    const fs = require("node:fs");
    const writable = (dir) => {
      try {
        fs.writeFileSync(`${dir}/.write-test`, "");
        fs.rmSync(`${dir}/.write-test`);
        return true;
      } catch {
        return false;
      }
    };
    const dirs = ["/", "/app", "/app/dist", "/home/node", "/usr/local/bin", "/var/tmp", "/etc", "/tmp"];
    const out = {
      node: process.versions.node, uid: process.getuid(), gid: process.getgid(), cwd: process.cwd(), home: process.env.HOME,
      stateDir: process.env.PIPELINE_STATE_DIR, onednn: process.env.TF_ENABLE_ONEDNN_OPTS, nodeEnv: process.env.NODE_ENV,
      writable: dirs.filter(writable), opsLibrary: fs.existsSync("dist/native/cnn_ops.node"),
    };
    out.backend = require("./dist/src/ml/tf").loadTf().getBackend();
    console.log(JSON.stringify(out));'
  wait "${RUN_PIDS[$CONTAINER_PREFIX-check]}" || die "the image check failed:$(printf '\n%s' "$(tail -n 20 "$(container_log check)")")"
  local report
  report=$(grep '^{' "$(container_log check)" | tail -n 1)
  log "image: $report"
  jq -e --arg node "$NODE_VERSION" '.node == $node and .uid != 0 and .writable == ["/tmp"] and (.home | startswith("/tmp")) and (.stateDir | startswith("/tmp"))
    and .onednn == "0" and .opsLibrary and .backend == "tensorflow"' <<<"$report" >/dev/null ||
    die "the image does not keep its promises (Node.js $NODE_VERSION, non-root, only /tmp writable, HOME and state in /tmp, oneDNN off, native backend, ops library): $report"
}

# Waits for a worker's 'worker started' log line; prints its Worker Deployment version.
wait_for_worker() {
  local name=$1 log deadline=$((SECONDS + 300)) line
  log=$(container_log "$name")
  while ((SECONDS < deadline)); do
    line=$(grep -m1 '"msg":"worker started"' "$log" || true)
    if [[ -n $line ]]; then
      jq -r '.version' <<<"$line"
      return
    fi
    container_running "$name" || die "the $name worker exited during start-up:$(printf '\n%s' "$(tail -n 20 "$log")")"
    sleep 1
  done
  die "the $name worker did not start within 300 s; see $log"
}

wait_for_http() {
  local name=$1 url=$2 deadline=$((SECONDS + 120)) log
  log=$(container_log "$name")
  until curl -fsS -o /dev/null "$url" 2>/dev/null; do
    container_running "$name" || die "$name exited:$(printf '\n%s' "$(tail -n 20 "$log")")"
    ((SECONDS < deadline)) || die "$url did not answer within 120 s; see $log"
    sleep 1
  done
}

# set-current-version is refused until the version polls every task queue the deployment has
# seen; the workers' pollers register within seconds of their start.
set_current_version() {
  local deadline=$((SECONDS + 120)) out
  until out=$(temporal_cli worker deployment set-current-version --deployment-name "$DEPLOYMENT_NAME" \
    --build-id "$1" --yes 2>&1); do
    ((SECONDS < deadline)) || die "set-current-version $DEPLOYMENT_NAME.$1 was not accepted within 120 s: $out"
    sleep 2
  done
  log "current version: $DEPLOYMENT_NAME.$1"
}

# GET of bucket/key (path-style) from the stack's S3, signed with its test keys, as a client of a
# real S3 would be (SeaweedFS without identities accepts any).
s3_get() {
  local path=$1
  shift
  curl -fsS --aws-sigv4 aws:amz:us-east-1:s3 --user testing:testing "$@" "$S3_URL/$path"
}

# Downloads a model prefix (src/ml/model-store.ts: model.json, weights.bin, metadata.json) from
# the stack's S3 into the layout /opt/ml/model is read with (src/serving/load.ts).
fetch_model() {
  local source=$1 dir=$2 file
  [[ $source == s3://* ]] || die "the model's source is not an S3 prefix: $source"
  mkdir -p "$dir"
  for file in model.json weights.bin metadata.json; do
    s3_get "${source#s3://}/$file" -o "$dir/$file" || die "could not download $source/$file"
  done
  chmod -R a+rX "$dir"
}

# POSTs one test image of the seeded dataset as {"instances": [H x W x RGB floats in [0, 1]]} and
# checks that the answer names a label with a probability per class.
predict() {
  local url=$1 key image size request answer
  key=$(s3_get "smoke?list-type=2&prefix=data/test/" | grep -o '<Key>[^<]*</Key>' | sed 's/<[^>]*>//g' | tail -n 1)
  [[ -n $key ]] || die "no test image in s3://smoke/data/test/"
  image=$SMOKE_DIR/test-image.jpg
  s3_get "smoke/$key" -o "$image" || die "could not download s3://smoke/$key"
  size=$(jq -r '.imageSize' "$SMOKE_DIR/opt-ml-model/metadata.json")
  request=$SMOKE_DIR/request.json
  # Decoded with the project's own decoder (the native backend of this checkout).
  node - "$image" "$size" >"$request" <<'JS' || die "could not make a request from $image"
const { readFileSync } = require('node:fs');
const { decodeAndResize } = require(`${process.cwd()}/dist/src/data/images`);
const [file, size] = [process.argv[2], Number(process.argv[3])];
const px = decodeAndResize(readFileSync(file), size);
const rows = Array.from({ length: size }, (_, y) =>
  Array.from({ length: size }, (_, x) => Array.from({ length: 3 }, (_, c) => px[(y * size + x) * 3 + c] / 255)),
);
process.stdout.write(JSON.stringify({ instances: [rows] }));
JS
  answer=$(curl -fsS -H 'content-type: application/json' --data-binary "@$request" "$url/invocations") ||
    die "POST /invocations failed: $(curl -sS -H 'content-type: application/json' --data-binary "@$request" "$url/invocations")"
  jq -e '(.predictions | length) == 1 and (.predictions[0].label | type) == "string"
    and (.predictions[0].probabilities | length) >= 2' <<<"$answer" >/dev/null ||
    die "the answer has no prediction with a label: $answer"
  log "POST /invocations (s3://smoke/$key, ${size}x${size}, true class $(basename "$(dirname "$key")")): $(jq -c '.predictions[0]' <<<"$answer")"
}

# --- stopping -----------------------------------------------------------------------------------

# Every process below pid (children, grandchildren, ...).
descendants() {
  ps -eo pid=,ppid= | awk -v root="$1" '
    { parent[$1] = $2 }
    END { for (p in parent) { q = p; while (q in parent && q != root && q > 1) q = parent[q]; if (q == root) print p } }'
}

# Stops every container (all at once: each worker drains on its own): SIGTERM to each command
# (buildah run answers SIGTERM with SIGKILL, so the signal goes to the process buildah's chroot
# runtime started), up to 30 s for them to exit, then SIGTERM and SIGKILL to anything left of their
# process trees; chroot isolation has no PID namespace, so detached children (the pipeline worker's
# local endpoint) would outlive them otherwise.
stop_containers() {
  local name pid p trees='' mains='' deadline
  for name in "${CONTAINERS[@]}"; do
    pid=${RUN_PIDS[$name]:-}
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || continue
    trees+=" $pid $(descendants "$pid" | tr '\n' ' ')"
    mains+=" $(container_command "$pid")"
  done
  for p in $mains; do kill -TERM "$p" 2>/dev/null || true; done
  deadline=$((SECONDS + 30))
  for p in $mains; do
    while kill -0 "$p" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
  done
  if [[ -n ${trees// /} ]]; then
    for p in $trees; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 1
    for p in $trees; do kill -KILL "$p" 2>/dev/null || true; done
  fi
  for name in "${CONTAINERS[@]}"; do
    [[ -n ${RUN_PIDS[$name]:-} ]] && wait "${RUN_PIDS[$name]}" 2>/dev/null
    buildah umount "$name" >/dev/null 2>&1 || true
    buildah rm "$name" >/dev/null 2>&1 || true
  done
}

# The container's command below a buildah run process: buildah re-executes itself (comm
# 'memfd:buildah-c...'), so it is the first process in the tree that is not buildah.
container_command() {
  local p
  for p in $(descendants "$1"); do
    [[ $p != "$1" && $(ps -o comm= -p "$(ps -o ppid= -p "$p" | tr -d ' ')" 2>/dev/null) == *buildah* &&
      $(ps -o comm= -p "$p" 2>/dev/null) != *buildah* ]] && echo "$p"
  done
  return 0
}

# The local endpoint the pipeline worker started, if it outlived the worker's process tree (its
# pid is recorded in the worker's state folder, which is the container's /tmp on this host).
stop_local_endpoints() {
  local state pid
  for state in "$SMOKE_DIR"/containers/*-tmp/*/endpoints/*.json; do
    [[ -f $state ]] || continue
    pid=$(jq -r '.pid' "$state")
    if [[ $pid =~ ^[0-9]+$ ]] && grep -qs 'dist/src/serving/main.js' "/proc/$pid/cmdline"; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
}

smoke_finish() {
  local status=$?
  trap - EXIT
  set +e
  log "stopping what the smoke test started"
  stop_containers
  stop_local_endpoints
  if [[ -n ${SMOKE_DIR:-} && -d $SMOKE_DIR/run ]]; then node dist/scripts/stack.js down >&2; fi
  [[ -n $SMOKE_STARTED ]] && timed stop && TIMINGS+=("total=$(elapsed "$SMOKE_STARTED")s")
  local build_id build_seconds
  if read -r build_id build_seconds <"$BUILD_RECORD" 2>/dev/null && [[ $build_id == "$(image_id "$IMAGE" 2>/dev/null)" ]]; then
    log "timings: build ${build_seconds}s (the last 'image -- build', which made this image); smoke: ${TIMINGS[*]}"
  else
    log "timings: smoke: ${TIMINGS[*]}"
  fi
  log "logs: ${SMOKE_DIR:-$SMOKE_STACK_DIR}/containers/"
  if [[ $status == 0 && $SMOKE_STEP == finished ]]; then
    echo "smoke: OK"
  else
    echo "smoke: FAILED while $SMOKE_STEP (exit status $status; see the ERROR above)"
    [[ $status == 0 ]] && status=1
  fi
  exit "$status"
}
