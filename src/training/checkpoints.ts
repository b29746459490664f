/**
 * A training run's checkpoints in S3, one object each under the run's prefix. Their names sort in
 * the order they were written (phase, epoch, batch), so the newest is the last listed.
 */
import type { LayersModel } from '@tensorflow/tfjs-node';
import { checkpointInfo, encodeCheckpoint, restoreCheckpoint, type CheckpointInfo } from '../ml/checkpoint';
import type { TrainingOptimizer } from '../ml/native-adam';
import type { TrainPosition } from '../ml/trainer';
import type { S3Store } from '../storage/s3';

/** Where a run stands, beside the weights and optimizer state. */
export interface RunPosition extends CheckpointInfo {
  phaseIndex: number;
  position: TrainPosition;
  /** CrossVal: the held-out accuracy of each fold finished so far. */
  foldScores: number[];
}

export interface StoredCheckpoint {
  uri: string;
  bytes: Uint8Array;
  info: RunPosition;
}

const pad = (n: number, width: number) => String(n).padStart(width, '0');

export class RunCheckpoints {
  constructor(
    private readonly s3: S3Store,
    readonly prefix: string,
  ) {}

  async latest(): Promise<StoredCheckpoint | undefined> {
    const newest = (await this.s3.list(this.prefix)).filter((o) => o.key.endsWith('.ckpt')).at(-1);
    if (!newest) return undefined;
    const uri = this.s3.uriOf(this.prefix, newest.key);
    const bytes = await this.s3.getBytes(uri);
    return { uri, bytes, info: checkpointInfo(bytes) as RunPosition };
  }

  /** Restores model and optimizer; returns where training continues. */
  async restore(checkpoint: StoredCheckpoint, model: LayersModel, optimizer: TrainingOptimizer): Promise<TrainPosition> {
    return ((await restoreCheckpoint(checkpoint.bytes, model, optimizer)) as RunPosition).position;
  }

  /** Writes a new checkpoint, then deletes the older ones: at every moment one complete checkpoint exists. */
  async save(
    model: LayersModel,
    optimizer: TrainingOptimizer,
    at: { phase: string; phaseIndex: number; position: TrainPosition; foldScores: number[] },
  ): Promise<string> {
    const { phase, phaseIndex, position } = at;
    const uri = `${this.prefix}p${pad(phaseIndex, 2)}-${phase}-e${pad(position.epoch, 4)}-b${pad(position.batch, 6)}.ckpt`;
    await this.s3.put(uri, await encodeCheckpoint(model, optimizer, { ...at, epoch: position.epoch } satisfies RunPosition));
    for (const o of await this.s3.list(this.prefix))
      if (this.s3.uriOf(this.prefix, o.key) < uri) await this.s3.delete(this.s3.uriOf(this.prefix, o.key));
    return uri;
  }

  async deleteAll(): Promise<void> {
    for (const o of await this.s3.list(this.prefix)) await this.s3.delete(this.s3.uriOf(this.prefix, o.key));
  }
}
