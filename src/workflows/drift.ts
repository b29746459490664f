/**
 * Drift checks, by the endpoint's owner (docs/drift.md): every `driftCheckHours` the measureDrift
 * activity compares what the endpoint's servers saw (their drift sample in S3) with the training
 * data of the model that serves. The figure is recorded in the status and the Web UI; above
 * `driftThreshold` it is announced, and with `retrainOnDrift` a retraining is asked for (which goes
 * through approval when that is required). The wait between checks is a durable timer.
 */
import { MIN_DRIFT_IMAGES } from '../common/constants';
import { clip } from './bounds';
import { drift } from './activities';
import { errorMessage } from './errors';
import type { PipelineParams } from './input';
import type { DriftStatus } from './messages';
import type { PipelineResult } from './pipeline';
import type { Retrainings } from './retraining';
import type { StatusTracker } from './status';

/**
 * How long after its first image a server's batch may still be written (a minute by default): a
 * window ends this long before its check, a quarter of driftCheckHours at most, so that every
 * batch is counted in exactly one window.
 */
const SAMPLE_LAG_MS = 5 * 60_000;
/** The longest window one check reads (days of batches), however long nothing could be compared. */
const MAX_WINDOW_MS = 30 * 86_400_000;

export interface DriftCarry {
  /** When the next check is due (epoch ms). */
  nextCheck?: number;
  /** Where the next window starts (ISO time): the last window's end, once it was compared. */
  windowStart?: string;
}

export class DriftWatch {
  private nextCheck?: number;
  private windowStart?: string;

  constructor(
    private readonly params: PipelineParams,
    private readonly status: StatusTracker,
    carry?: DriftCarry,
  ) {
    this.nextCheck = carry?.nextCheck;
    this.windowStart = carry?.windowStart;
  }

  carry(): DriftCarry {
    const { nextCheck, windowStart } = this;
    return { nextCheck, windowStart };
  }

  /** When the next check is due (epoch ms); Infinity with driftCheckHours 0. */
  nextCheckAt(): number {
    if (this.params.driftCheckHours === 0) return Infinity;
    return (this.nextCheck ??= Date.now() + this.interval());
  }

  /** A new model serves: the next window starts now, against its own training data. */
  restart(): void {
    this.windowStart = undefined;
  }

  /** Compares the window since the last comparison; records, announces and (retrainOnDrift) asks for a retraining. */
  async check(result: PipelineResult, retrainings: Retrainings): Promise<void> {
    this.nextCheck = Date.now() + this.interval();
    const lag = Math.min(SAMPLE_LAG_MS, this.interval() / 4);
    const until = new Date(Date.now() - lag).toISOString();
    // A new deployment's first images may share a batch with its verification, just before deployedAt.
    const deployedAt = result.deployment && new Date(Date.parse(result.deployment.deployedAt) - lag).toISOString();
    const start = this.windowStart ?? deployedAt ?? until;
    const earliest = new Date(Date.now() - MAX_WINDOW_MS).toISOString();
    const from = start < earliest ? earliest : start;
    const base = { threshold: this.params.driftThreshold, from, until, checkedAt: new Date().toISOString() };
    const manifestUri = this.status.status.dataset?.manifestUri;
    if (!result.deployment || !manifestUri) {
      this.record({ ...base, outcome: 'unavailable', detail: 'nothing serves yet' });
      return;
    }
    let figures;
    try {
      const measured = await drift.measureDrift.executeWithOptions(
        { summary: `Measure drift on ${this.params.endpointName} from ${from} until ${until}` },
        [{ endpointName: this.params.endpointName, manifestUri, since: from, until, version: result.deployment.version }],
      );
      if (!measured.figures) {
        this.record({ ...base, outcome: 'unavailable', detail: clip(measured.unavailable ?? 'no figure') });
        return;
      }
      figures = measured.figures;
    } catch (err) {
      this.record({ ...base, outcome: 'failed', detail: clip(`the measurement failed: ${errorMessage(err)}`) });
      return;
    }
    if (figures.images < MIN_DRIFT_IMAGES) {
      this.record({ ...base, outcome: 'too-few-images', figures, detail: `${figures.images} images seen, fewer than ${MIN_DRIFT_IMAGES}` });
      return;
    }
    this.windowStart = until;
    if (figures.psi <= this.params.driftThreshold) {
      this.record({ ...base, outcome: 'steady', figures });
      return;
    }
    const f = figures.features;
    const detail =
      `PSI ${figures.psi} above ${this.params.driftThreshold} over ${figures.images} images ` +
      `(red ${f.red}, green ${f.green}, blue ${f.blue}, class ${f.class})`;
    const retraining = this.params.retrainOnDrift ? (retrainings.ask(`drift: ${detail}`) ?? 'asked for a retraining') : undefined;
    this.record({ ...base, outcome: 'drifted', figures, detail, ...(retraining ? { retraining } : {}) });
    this.status.announce('drift', `${detail}${retraining ? `; ${retraining}` : ''}`, result.deployment.version);
  }

  private interval(): number {
    return this.params.driftCheckHours * 3600_000;
  }

  private record(drift: DriftStatus): void {
    this.status.update((s) => void (s.drift = drift));
  }
}
