/**
 * The fault schedule, fixed by the seed before anything runs, so `--seed S` repeats it:
 *
 * - aimed faults: SIGKILLs tied to one pipeline's position (its status query's `stage`, or for
 *   training its heartbeat's phase), fired when the harness sees the run there, so that kills land
 *   in registration, promotion and deployment and not only in the long training stretch;
 * - background kills: a random process kind at seeded, exponentially spaced times;
 * - one Temporal dev server restart and one MLflow restart, each when a seeded run enters training
 *   (plus a seeded delay), so they happen mid-run with work in flight.
 */
import { seededRandom } from '../../src/common/random';
import type { ProcessKind } from './procs';

/**
 * Faults aimed at one run that are not a SIGKILL: a training child killed by its memory limit
 * (memory-limit.ts), the training worker cut off from Temporal past its heartbeat timeout while its
 * child trains on (partition.ts), the workers' /tmp filled up while a run deploys (scratch.ts), and
 * 1,000 redeploy signals at a serving run (runs.ts).
 */
export type OtherAimedKind = 'training-oom' | 'training-partition' | 'full-tmp' | 'redeploy-flood';
export type AimedKind = ProcessKind | OtherAimedKind;
export type FaultKind = AimedKind | 'temporal-restart' | 'mlflow-restart';

/**
 * Where a run must be for an aimed fault to fire: a status stage, or `registration`, which is a
 * training whose last heartbeat reports the final phase's last epoch done (evaluation, saving the
 * model and registering its version follow, in that order), or `sagemaker-model` and
 * `sagemaker-endpoint`, a SageMaker deploy right after its CreateModel or CreateEndpoint went
 * through (runs that deploy to SageMaker only).
 */
export type Aim =
  | 'preprocessing'
  | 'training'
  | 'registration'
  | 'selecting'
  | 'deploying'
  | 'promoting'
  | 'serving'
  | 'sagemaker-model'
  | 'sagemaker-endpoint';

export interface AimedFault {
  run: number;
  kind: AimedKind;
  aim: Aim;
  /** Seconds to wait after the run is seen there (spreads kills within the stage). */
  delaySeconds: number;
}

export interface BackgroundKill {
  atSeconds: number;
  kind: ProcessKind;
}

export interface ServiceRestart {
  kind: 'temporal-restart' | 'mlflow-restart';
  /** Fires this many seconds after run `run` enters training. */
  run: number;
  delaySeconds: number;
}

export interface FaultSchedule {
  seed: number;
  aimed: AimedFault[];
  background: BackgroundKill[];
  restarts: ServiceRestart[];
  /** The run that trains at 224 px (the default input size) instead of 16-24 px. */
  fullSizeRun: number;
}

/**
 * The aimed faults every harness run includes (each on a different pipeline while there are
 * enough). `endpoint-server` at `serving` kills a deployed endpoint, which the run's serving loop
 * must notice and restart (endpointCheckSeconds). Those at `sagemaker-*` go to runs that deploy
 * to SageMaker (SAGEMAKER_AIMED).
 */
const AIMED: readonly Pick<AimedFault, 'kind' | 'aim'>[] = [
  { kind: 'data-worker', aim: 'preprocessing' },
  { kind: 'shard-builder', aim: 'preprocessing' },
  { kind: 'training-worker', aim: 'training' },
  { kind: 'training-child', aim: 'training' },
  { kind: 'pipeline-worker', aim: 'training' },
  { kind: 'training-child', aim: 'registration' },
  { kind: 'training-worker', aim: 'registration' },
  { kind: 'pipeline-worker', aim: 'deploying' },
  { kind: 'endpoint-server', aim: 'deploying' },
  { kind: 'pipeline-worker', aim: 'promoting' },
  { kind: 'endpoint-server', aim: 'serving' },
  { kind: 'training-oom', aim: 'training' },
  { kind: 'training-partition', aim: 'training' },
  { kind: 'full-tmp', aim: 'selecting' },
  { kind: 'redeploy-flood', aim: 'serving' },
];

/**
 * Faults that need a local endpoint: its server, its hot swaps (a SageMaker redeploy would need
 * UpdateEndpoint, which moto lacks) and its state on the workers' /tmp.
 */
const LOCAL_ONLY: readonly AimedKind[] = ['endpoint-server', 'redeploy-flood', 'full-tmp'];

/** Kills of the pipeline worker mid-deploy to SageMaker, one per create call a retry must not repeat. */
const SAGEMAKER_AIMED: readonly Pick<AimedFault, 'kind' | 'aim'>[] = [
  { kind: 'pipeline-worker', aim: 'sagemaker-model' },
  { kind: 'pipeline-worker', aim: 'sagemaker-endpoint' },
];

/** Background kills never target endpoint servers: one aimed kill shows that case, more would only repeat it. */
const BACKGROUND_KINDS: readonly ProcessKind[] = ['pipeline-worker', 'data-worker', 'training-worker', 'training-child', 'shard-builder'];

export function makeSchedule(
  seed: number,
  runs: number,
  {
    horizonSeconds,
    meanKillIntervalSeconds,
    sageMakerRuns = [],
  }: { horizonSeconds: number; meanKillIntervalSeconds: number; sageMakerRuns?: number[] },
): FaultSchedule {
  const random = seededRandom(seed);
  const int = (n: number): number => Math.floor(random() * n);
  // A seeded permutation of the runs: aimed fault j goes to order[j % runs].
  const order = Array.from({ length: runs }, (_, i) => i);
  for (let i = runs - 1; i > 0; i--) {
    const j = int(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  // Only the long stages get a spread; deploying, promoting and registration last about a second,
  // so their kills go in as soon as the run is seen there.
  const long: readonly Aim[] = ['preprocessing', 'training', 'serving'];
  // A SageMaker endpoint has no local server: those faults go to the next run that serves locally.
  const local = order.filter((i) => !sageMakerRuns.includes(i));
  const runFor = (a: (typeof AIMED)[number], j: number): number =>
    LOCAL_ONLY.includes(a.kind) && sageMakerRuns.includes(order[j % runs]!) && local.length
      ? (local.find((i) => order.indexOf(i) > j % runs) ?? local[0]!)
      : order[j % runs]!;
  const aimed = AIMED.map((a, j) => ({
    ...a,
    run: runFor(a, j),
    delaySeconds: long.includes(a.aim) ? Math.round(random() * 30) / 10 : 0,
  }));
  // One draw picks where the pair starts; they go to different SageMaker runs while there are two.
  if (sageMakerRuns.length) {
    const first = int(sageMakerRuns.length);
    SAGEMAKER_AIMED.forEach((a, j) => aimed.push({ ...a, run: sageMakerRuns[(first + j) % sageMakerRuns.length]!, delaySeconds: 0 }));
  }
  const background: BackgroundKill[] = [];
  for (let t = 0; ;) {
    t += -Math.log(1 - random()) * meanKillIntervalSeconds;
    if (t > horizonSeconds) break;
    background.push({ atSeconds: Math.round(t), kind: BACKGROUND_KINDS[int(BACKGROUND_KINDS.length)]! });
  }
  // Early enough that later runs start after it, late enough that earlier ones are mid-flight.
  const restarts: ServiceRestart[] = [
    {
      kind: 'temporal-restart',
      run: Math.min(runs - 1, Math.floor(runs * 0.25) + int(Math.max(1, Math.floor(runs / 4)))),
      delaySeconds: 5 + int(15),
    },
    {
      kind: 'mlflow-restart',
      run: Math.min(runs - 1, Math.floor(runs * 0.5) + int(Math.max(1, Math.floor(runs / 4)))),
      delaySeconds: 5 + int(15),
    },
  ];
  return { seed, aimed, background, restarts, fullSizeRun: int(runs) };
}
