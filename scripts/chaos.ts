/**
 * `npm run chaos -- --runs N`: N small pipelines on a local stack of their own while processes are
 * SIGKILLed, Temporal and MLflow are restarted, and a fault proxy breaks S3, MLflow and SageMaker
 * API calls; then one JSON line says whether everything still came out right (docs/chaos.md).
 *
 * Progress goes to stderr; stdout carries only the final JSON line.
 */
import { cpSync, mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection, WorkflowClient } from '@temporalio/client';
import { TASK_QUEUES } from '../src/common/constants';
import { mapLimit } from '../src/common/map-limit';
import { seededRandom } from '../src/common/random';
import { loadConfig } from '../src/config';
import { writeSyntheticDataset } from '../src/data/generate';
import { defaultBuildId } from '../src/runtime/build-id';
import { setCurrentVersion } from '../src/runtime/deployment';
import { createSageMakerClient } from '../src/sagemaker/api';
import { isOurServer } from '../src/serving/local-endpoints';
import { killGroup } from '../src/system/process';
import { stackDown, stackUp, type StackOptions } from '../src/stack/services';
import { createS3Client, S3Store } from '../src/storage/s3';
import { MlflowClient } from '../src/tracking/mlflow';
import type { PipelineInput } from '../src/workflows/input';
import {
  duplicateRegisteredVersions,
  endpointCounts,
  historyFigures,
  orphanProcesses,
  recoverySeconds,
  runsLeftRunning,
  type Report,
} from './chaos/checks';
import { FaultProxy } from './chaos/fault-proxy';
import { sageMakerLeftovers, sageMakerServedVersion } from './chaos/sagemaker';
import { endpointPid, Injector } from './chaos/injector';
import { PartitionProxy } from './chaos/partition';
import { findProcesses, MARKER_ENV, sigkill } from './chaos/procs';
import { driveRun, PRE_SERVING, type HookedAim, type LiveRun, type RunOutcome } from './chaos/runs';
import { makeSchedule, type AimedKind } from './chaos/schedule';
import { makeScratch, unmountScratch } from './chaos/scratch';
import { Supervisor } from './chaos/supervisor';

const ROOT = resolve(__dirname, '..', '..');
const EXPERIMENT = 'cnn_skin_cancer';
const DEPLOYMENT_NAME = 'cnn-skin-cancer';
/** How often each run checks its endpoint while serving (the default, 120 s, is longer than the harness waits). */
const ENDPOINT_CHECK_SECONDS = 10;
/**
 * The proxied call a hooked kill waits for: a shard builder's upload of a shard (shard-builder.ts),
 * the MLflow call that registers a trained version (run-log.ts), the first call of a promotion
 * (registry.ts), a SageMaker deploy's CreateModel or CreateEndpoint (src/sagemaker/deploy.ts).
 */
const HOOK_CALLS: Record<HookedAim, { proxy: 's3' | 'mlflow' | 'sagemaker'; method: string; path: RegExp; target?: RegExp }> = {
  preprocessing: { proxy: 's3', method: 'PUT', path: /\/shard-\d+\.bin$/ },
  registration: { proxy: 'mlflow', method: 'POST', path: /\/model-versions\/create$/ },
  promoting: { proxy: 'mlflow', method: 'POST', path: /\/model-versions\/transition-stage$/ },
  // SageMaker's JSON protocol names the operation in a header.
  'sagemaker-model': { proxy: 'sagemaker', method: 'POST', path: /^\/$/, target: /^SageMaker\.CreateModel$/ },
  'sagemaker-endpoint': { proxy: 'sagemaker', method: 'POST', path: /^\/$/, target: /^SageMaker\.CreateEndpoint$/ },
};

interface Options {
  runs: number;
  concurrency: number;
  seed: number;
  minutes: number;
  faultRate: number;
  /** Mean seconds between background kills. */
  killEvery: number;
  /**
   * First of the harness's ports (see `ports`): away from the demo's 7233/8233/5000/4566/8333 and the
   * tests' 5071/4571/8343/8091. SeaweedFS's internal ports are 10000 above its S3 port.
   */
  portBase: number;
  /** Every Nth run (runs N-1, 2N-1, ...) deploys to SageMaker (moto) instead of a local endpoint; 0 for none. */
  sagemakerEvery: number;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { runs: 20, concurrency: 4, seed: 1, minutes: 40, faultRate: 0.05, killEvery: 30, portBase: 17300, sagemakerEvery: 3 };
  const keys: Record<string, keyof Options> = {
    '--runs': 'runs',
    '--concurrency': 'concurrency',
    '--seed': 'seed',
    '--minutes': 'minutes',
    '--fault-rate': 'faultRate',
    '--kill-every': 'killEvery',
    '--port-base': 'portBase',
    '--sagemaker-every': 'sagemakerEvery',
  };
  for (let i = 0; i < argv.length; i++) {
    const key = keys[argv[i]!];
    const value = Number(argv[i + 1]);
    if (!key || !Number.isFinite(value)) throw new Error(`usage: npm run chaos -- [${Object.keys(keys).join(' N] [')} N]`);
    o[key] = value;
    i++;
  }
  if (o.runs < 1 || o.concurrency < 1 || o.minutes <= 0 || o.faultRate < 0 || o.faultRate > 1 || o.sagemakerEvery < 0)
    throw new Error('invalid option values');
  return o;
}

const say = (line: string): void => void process.stderr.write(`[chaos ${new Date().toISOString().slice(11, 19)}] ${line}\n`);

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const deadline = started + opts.minutes * 60_000;
  const host = '127.0.0.1';
  const p = opts.portBase;
  const stack: StackOptions = {
    dir: join(ROOT, '.stack', 'chaos'),
    host,
    projectRoot: ROOT,
    ports: { temporal: p, temporalUi: p + 1, mlflow: p + 2, moto: p + 3, s3: p + 7 },
  };
  const random = seededRandom(opts.seed);
  const onSageMaker = (i: number): boolean => opts.sagemakerEvery > 0 && i % opts.sagemakerEvery === opts.sagemakerEvery - 1;
  const schedule = makeSchedule(opts.seed, opts.runs, {
    horizonSeconds: opts.minutes * 60,
    meanKillIntervalSeconds: opts.killEvery,
    sageMakerRuns: Array.from({ length: opts.runs }, (_, i) => i).filter(onSageMaker),
  });
  say(
    `seed ${opts.seed}: ${schedule.aimed.length} aimed kills, ${schedule.background.length} background kills, restarts ${JSON.stringify(schedule.restarts)}`,
  );

  // A fresh stack each time, so every count below is about this run only.
  await stackDown(stack).catch(() => undefined);
  unmountScratch(stack.dir);
  rmSync(stack.dir, { recursive: true, force: true });
  mkdirSync(join(stack.dir, 'logs'), { recursive: true });
  // The workers' /tmp (TMPDIR, and PIPELINE_STATE_DIR under it, as in k8s/base/configmap.yaml):
  // a tmpfs the full-tmp fault fills. Its path, unique to this harness run, is also the marker
  // that tells this run's processes from anyone else's (procs.ts).
  const scratchDir = join(stack.dir, `tmp-${process.pid}`);
  const scratch = { dir: scratchDir, ...makeScratch(scratchDir) };
  const marker = scratchDir;
  const stateDir = join(scratchDir, 'state');
  mkdirSync(stateDir, { recursive: true });
  if (!scratch.mounted) say(`the workers' /tmp is a plain folder (${scratch.why}): full-tmp faults will be skipped`);
  // Between the training worker and Temporal, to cut it off (training-partition).
  const trainingLink = new PartitionProxy({ host, port: p + 8, upstream: { host, port: stack.ports.temporal } });

  // Each with its own seeded stream, so one proxy's traffic does not move another's faults.
  const proxy = (name: string, offset: number, upstreamPort: number, errorBody: 'xml' | 'json') =>
    new FaultProxy({
      name,
      host,
      port: p + offset,
      upstream: { host, port: upstreamPort },
      rate: opts.faultRate,
      random: seededRandom(opts.seed + offset - 3),
      errorBody,
    });
  const proxies = {
    s3: proxy('s3', 4, stack.ports.s3, 'xml'),
    sagemaker: proxy('sagemaker', 5, stack.ports.moto, 'json'),
    mlflow: proxy('mlflow', 6, stack.ports.mlflow, 'json'),
  };
  const buildId = defaultBuildId();
  const workerEnv: NodeJS.ProcessEnv = {
    ...process.env,
    AWS_ENDPOINT_URL_S3: proxies.s3.url,
    AWS_ENDPOINT_URL_SAGEMAKER: proxies.sagemaker.url,
    AWS_ACCESS_KEY_ID: 'testing',
    AWS_SECRET_ACCESS_KEY: 'testing',
    AWS_REGION: 'us-east-1',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    MLFLOW_TRACKING_URI: proxies.mlflow.url,
    TEMPORAL_ADDRESS: `${host}:${stack.ports.temporal}`,
    TEMPORAL_NAMESPACE: 'default',
    TEMPORAL_WORKER_BUILD_ID: buildId,
    TEMPORAL_DEPLOYMENT_NAME: DEPLOYMENT_NAME,
    PIPELINE_STATE_DIR: stateDir,
    LOCAL_ENDPOINT_PORT: String(p + 100),
    DEFAULT_DEPLOY_TARGET: 'local',
    // For the runs that deploy to SageMaker: moto creates endpoints InService at once, so a short poll.
    SAGEMAKER_IMAGE_URI: '123456789012.dkr.ecr.us-east-1.amazonaws.com/cnn-skin-cancer:chaos',
    SAGEMAKER_EXECUTION_ROLE_ARN: 'arn:aws:iam::123456789012:role/sagemaker-exec',
    SAGEMAKER_POLL_SECONDS: '1',
    LOG_FORMAT: 'json',
    [MARKER_ENV]: marker,
    HOME: scratchDir,
  };
  // The harness's own view (dataset seeding, checks) bypasses the proxies: it measures, it is not under test.
  const direct = loadConfig({
    ...workerEnv,
    AWS_ENDPOINT_URL_S3: `http://${host}:${stack.ports.s3}`,
    MLFLOW_TRACKING_URI: `http://${host}:${stack.ports.mlflow}`,
  });
  const supervisor = new Supervisor({
    workersDir: join(ROOT, 'dist', 'src', 'workers'),
    logDir: join(stack.dir, 'logs'),
    env: workerEnv,
    envOf: { training: { TEMPORAL_ADDRESS: trainingLink.address } },
    healthPort: p + 10,
    metricsPort: p + 20,
    log: say,
  });
  const endpointNames = Array.from({ length: opts.runs }, (_, i) => `chaos-${i}`);

  let cleaned = false;
  const cleanup = async (): Promise<void> => {
    if (cleaned) return;
    cleaned = true;
    await supervisor.stop(15_000).catch(() => undefined);
    for (const proc of findProcesses(marker)) sigkill(proc.pid);
    await stackDown(stack).catch((err: Error) => say(`stack down: ${err.message}`));
    await Promise.all([...Object.values(proxies), trainingLink].map((x) => x.stop()));
    // The endpoints' logs outlive the tmpfs, with the rest of the run's logs.
    try {
      cpSync(join(stateDir, 'logs'), join(stack.dir, 'logs', 'endpoints'), { recursive: true });
    } catch {
      /* no endpoint ever started */
    }
    unmountScratch(stack.dir);
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const)
    process.once(signal, () => {
      say(`${signal}: stopping the workers, the endpoints and the stack`);
      void cleanup().finally(() => process.exit(130));
    });

  try {
    say(
      `stack in ${stack.dir}: Temporal ${p}, UI ${p + 1}, MLflow ${p + 2}, moto ${p + 3}, S3 ${p + 7}; proxies ${p + 4}-${p + 6}, ${p + 8} (training worker to Temporal)`,
    );
    await stackUp(stack, say);
    for (const x of [...Object.values(proxies), trainingLink]) await x.start();

    const s3 = new S3Store(createS3Client(direct));
    await s3.ensureBucket('chaos');
    // One run trains at the default input size, 224 px, on images of that size.
    const imageSizeOf = (i: number): number => (i === schedule.fullSizeRun ? 224 : [16, 20, 24][i % 3]!);
    await mapLimit(endpointNames, 4, (_, i) =>
      writeSyntheticDataset(s3, {
        outUri: `s3://chaos/data/run-${i}`,
        counts: { train: { benign: 16, malignant: 16 }, test: { benign: 4, malignant: 4 } },
        size: imageSizeOf(i) === 224 ? 224 : 32,
        seed: opts.seed * 1000 + i,
      }),
    );
    say(`seeded ${opts.runs} datasets (16 + 4 images per class, 32 px; run ${schedule.fullSizeRun}'s 224 px)`);

    supervisor.start();
    const connection = await Connection.connect({ address: workerEnv.TEMPORAL_ADDRESS! });
    await setCurrentVersion(
      connection.workflowService,
      { namespace: 'default', deploymentName: DEPLOYMENT_NAME, buildId },
      { timeoutMs: 180_000 },
    );
    const client = new WorkflowClient({ connection });
    say(`workers up as ${DEPLOYMENT_NAME}.${buildId}`);

    const live = new Map<number, LiveRun>();
    const injector = new Injector({ supervisor, marker, trainingLink, scratch, stack, stateDir, random, log: say });
    const inFlight = (stages: string[]): string[] =>
      [...live.values()].filter((r) => !r.closed && stages.includes(r.stage ?? '')).map((r) => r.workflowId);
    const affectedBy = (kind: AimedKind, run?: LiveRun): string[] => {
      switch (kind) {
        case 'pipeline-worker':
          return inFlight(PRE_SERVING);
        case 'data-worker':
        case 'shard-builder':
          return inFlight(['preprocessing']);
        case 'training-worker':
        case 'training-child':
        case 'training-oom':
        case 'training-partition':
          return [...live.values()]
            .filter((r) => !r.closed && r.pending.some((a) => a.type === 'trainModel' || a.type === 'evaluateChampion'))
            .map((r) => r.workflowId);
        case 'endpoint-server':
        case 'full-tmp':
        case 'redeploy-flood':
          return run ? [run.workflowId] : [];
      }
    };
    let statusBytesMax = 0;

    // Service restarts, one at a time, each a seeded delay after its run enters training.
    let restarting: Promise<void> = Promise.resolve();
    const onEnterTraining = (index: number): void => {
      for (const r of schedule.restarts.filter((x) => x.run === index))
        void sleep(r.delaySeconds * 1000).then(() => {
          restarting = restarting.then(() =>
            injector.restart(r.kind, inFlight(PRE_SERVING)).catch((err: Error) => say(`restart failed: ${err.message}`)),
          );
        });
    };

    let runsDone = false;
    const background = (async () => {
      for (const k of schedule.background) {
        while (!runsDone && Date.now() < started + k.atSeconds * 1000) await sleep(500);
        if (runsDone) return;
        injector.kill(k.kind, 'background', affectedBy(k.kind));
      }
    })();

    const sageMaker = createSageMakerClient(direct);
    const outcomes: RunOutcome[] = await mapLimit(endpointNames, opts.concurrency, (endpointName, i) => {
      if (Date.now() > deadline)
        return Promise.resolve({
          index: i,
          workflowId: `endpoint-${endpointName}`,
          completed: false,
          reason: 'not started: time bound reached',
        });
      const input: PipelineInput = {
        dataUri: `s3://chaos/data/run-${i}`,
        imageSize: imageSizeOf(i),
        epochs: 2,
        batchSize: 8,
        learningRate: 1e-3,
        crossValFolds: 2,
        seed: opts.seed + i,
        endpointName,
        ...(onSageMaker(i) ? { deployTarget: 'sagemaker' as const } : {}),
        // Owned and serving until the harness has checked it and sent finish.
        lifetimeSeconds: opts.minutes * 60 + 3600,
        // A killed endpoint server is put right by the serving loop's next check.
        endpointCheckSeconds: ENDPOINT_CHECK_SECONDS,
      };
      return driveRun(
        {
          client,
          taskQueue: TASK_QUEUES.pipeline,
          injector,
          live,
          aimed: schedule.aimed.filter((a) => a.run === i),
          affectedBy,
          onEnterTraining,
          deadline,
          stateDir,
          statusBytes: (bytes) => void (statusBytesMax = Math.max(statusBytesMax, bytes)),
          endpointCheckSeconds: ENDPOINT_CHECK_SECONDS,
          sageMakerServedVersion: (deployment) => sageMakerServedVersion(sageMaker, deployment),
          hook: (aim, fire) => {
            const call = HOOK_CALLS[aim];
            return proxies[call.proxy].once({
              matches: (method, path, headers) =>
                method === call.method && call.path.test(path) && (!call.target || call.target.test(String(headers['x-amz-target'] ?? ''))),
              fire,
            });
          },
          log: say,
        },
        i,
        input,
      ).then(async (outcome) => {
        // Its workflow is done with it: the endpoint is stopped here so 20 servers do not pile up in
        // memory. Only the server its state file names (not LocalEndpoints.stop, which also stops
        // unrecorded ones): any other server of this endpoint is a leak the orphan count must see.
        const pid = endpointPid(stateDir, endpointName);
        if (pid && isOurServer(pid)) await killGroup(pid).catch(() => undefined);
        return outcome;
      });
    });
    runsDone = true;
    await background;
    await restarting;

    // Runs cut off by the time bound must not keep working while the checks look.
    for (const o of outcomes.filter((x) => !x.completed))
      await client
        .getHandle(o.workflowId)
        .terminate('chaos harness: stopping')
        .catch(() => undefined);

    say('stopping the workers');
    await supervisor.stop(60_000);
    await sleep(3000); // children notice their parent's end at their next event-loop turn
    const orphans = orphanProcesses(marker, stateDir, endpointNames);
    const mlflow = new MlflowClient(direct.mlflow.trackingUri);
    // Each endpoint's runs register into a model of its own, named after it.
    const duplicates = await duplicateRegisteredVersions(mlflow, endpointNames);
    const running = await runsLeftRunning(mlflow, EXPERIMENT);
    const recovery = await recoverySeconds(client, injector.faults);
    const histories = await historyFigures(client);
    const endpoints = endpointCounts(outcomes.filter((o) => o.endpoint));
    const sageMakerLeft = await sageMakerLeftovers(
      sageMaker,
      endpointNames.filter((_, i) => onSageMaker(i)),
    );
    await connection.close();

    const report: Report = {
      seed: opts.seed,
      runs: opts.runs,
      completed: outcomes.filter((o) => o.completed).length,
      failed: outcomes.filter((o) => !o.completed).map((o) => ({ run: o.index, workflowId: o.workflowId, reason: o.reason ?? 'unknown' })),
      duplicateRegisteredVersions: duplicates.count,
      mlflowRunsLeftRunning: running.count,
      orphanProcesses: orphans.length,
      endpointsNotServingExpected: endpoints.notOk.length,
      endpointsServingExpected: endpoints.ok,
      sageMakerResourcesLeft: sageMakerLeft.length,
      medianRecoverySeconds: recovery.median,
      historyEventsMaxPerRun: histories.eventsMaxPerRun,
      historyBytesMaxPerRun: histories.bytesMaxPerRun,
      statusBytesMax,
      faultsInjected: injector.counts(),
      details: {
        minutes: Math.round((Date.now() - started) / 6000) / 10,
        options: opts,
        proxyFaults: Object.fromEntries(Object.entries(proxies).map(([k, x]) => [k, { requests: x.requests, ...x.counts }])),
        workerRestarts: supervisor.restarts(),
        faultsSkipped: injector.skipped.length,
        skipped: [...new Set(injector.skipped.map((x) => `${x.kind}: ${x.cause}`))],
        historyLargestRun: histories.largest,
        workflowRuns: histories.runs,
        fullSizeRun: `chaos-${schedule.fullSizeRun}`,
        recoveryMeasured: recovery.measured,
        recoveryPerFault: recovery.perFault,
        unrecovered: recovery.unrecovered,
        duplicates: duplicates.details,
        runsLeftRunning: running.details,
        orphans: orphans.map((o) => `${o.kind} pid ${o.pid} (ppid ${o.ppid})`),
        endpointProblems: endpoints.notOk,
        sageMakerRuns: endpointNames.filter((_, i) => onSageMaker(i)),
        sageMakerLeftovers: sageMakerLeft,
      },
    };
    await cleanup();
    process.stdout.write(JSON.stringify(report) + '\n');
  } catch (err) {
    say(`failed: ${(err as Error).stack ?? err}`);
    await cleanup();
    process.exitCode = 1;
  }
}

// Explicit exit: sockets the SDK clients keep alive must not hold the harness open after its report.
void main().finally(() => process.stdout.write('', () => process.exit()));
